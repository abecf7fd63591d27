/**
 * Online expansion end to end against the real kube-apiserver: two nodes' data planes in this
 * process (a replica server and a reconciler each; node-1 also hosts the engine in its EnginePool,
 * as `tandem dataplane` does), one Volume with a replica on each node and the engine on node-1.
 * Raising spec.sizeBytes grows both replicas (through their replica servers' registries) and then
 * the engine; a new NBD connection sees the new size and can use its last block, while the
 * connection opened before keeps the size it negotiated.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException, CoreV1Api } from '@kubernetes/client-node';
import { engineSocketPath } from '../../driver/csi/node-topology.js';
import { SecretCredentialSource } from '../../driver/dataplane/credentials.js';
import { KubeVolumeWriter } from '../../driver/dataplane/finalizers.js';
import { DataplaneReconciler, type EngineRunner } from '../../driver/dataplane/reconciler.js';
import { EnginePool } from '../../driver/engine/engine-pool.js';
import { KubeMembershipStore } from '../../driver/engine/kube-membership.js';
import { EngineMetrics } from '../../driver/engine/metrics.js';
import { NBD_CMD, NBD_ERRNO } from '../../driver/nbd/constants.js';
import { readMetadata } from '../../driver/replica/metadata.js';
import { ReplicaServer } from '../../driver/replica/server.js';
import { newVolume, type Volume } from '../../lib/api/volume.js';
import { run } from '../../lib/exec.js';
import { type Cache, keepWatching } from '../../lib/kube/informer.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { silentLogger } from '../../lib/log.js';
import { createRegistry } from '../../lib/metrics.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';
import { NbdTestClient } from '../harness/nbd-test-client.js';
import { RecordingPool } from '../harness/recording-pool.js';

const NAMESPACE = 'tandem-system';
const MiB = 1 << 20;
const SIZE = 8 * MiB;
const BIG = 24 * MiB;

interface Node {
  name: string;
  dataDir: string;
  server: ReplicaServer;
  address: string;
  reconciler?: DataplaneReconciler;
}

describe('online expansion through the data plane (real kube-apiserver)', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const volumes = new VolumeClient(kc);
  const root = mkdtempSync(join(tmpdir(), 'tandem-expand-it-'));
  const runDir = join(root, 'run');
  const name = uniqueName('exp');
  const secretName = `tandem-volume-${name}`;
  const nodes: Node[] = [];
  const clients: NbdTestClient[] = [];
  let pool: EnginePool;
  let informer: Cache<Volume>;
  let watching: { stop: () => Promise<void> };

  const reconcilerFor = (node: Node, enginePool: EngineRunner) =>
    new DataplaneReconciler({
      node: node.name,
      dataDir: node.dataDir,
      runDir,
      volumes: informer,
      writer: new KubeVolumeWriter(kc),
      pool: enginePool,
      credentials: new SecretCredentialSource(core),
      replicas: node.server.registry,
      resyncIntervalMs: 500,
      initialBackoffMs: 100,
      maxBackoffMs: 400,
      engineRebuildIntervalMs: 500,
    });

  const connect = async (): Promise<NbdTestClient> => {
    const c = await NbdTestClient.connect(engineSocketPath(runDir, name), name);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } }).catch((err: unknown) => {
      if (!(err instanceof ApiException && err.code === 409)) throw err;
    });
    mkdirSync(runDir);
    for (const i of [1, 2]) {
      const dataDir = join(root, `node-${i}`);
      const server = new ReplicaServer({ dataDir, log: silentLogger() });
      const port = await server.listen('127.0.0.1', 0);
      nodes.push({ name: uniqueName(`n${i}`), dataDir, server, address: `127.0.0.1:${port}` });
    }
    const [node1] = nodes as [Node, Node];
    pool = new EnginePool({
      node: node1.name,
      registry: node1.server.registry,
      metrics: new EngineMetrics(createRegistry('engine', false)),
      storeFor: (volume) => new KubeMembershipStore(volumes, volume),
      log: silentLogger(),
    });
    informer = volumes.informer();
    watching = await keepWatching(informer, { name: 'volumes' });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const node of nodes) await node.reconciler?.stop();
    await pool?.stopAll();
    await watching?.stop();
    const v = await volumes.get(name).catch(() => undefined);
    if (v?.metadata.finalizers?.length)
      await new KubeVolumeWriter(kc)
        .setFinalizers(name, v.metadata.resourceVersion ?? '', [])
        .catch(() => undefined);
    await volumes.delete(name).catch(() => undefined);
    await core.deleteNamespacedSecret({ name: secretName, namespace: NAMESPACE }).catch(() => undefined);
    for (const node of nodes) await node.server.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('a running engine follows spec.sizeBytes: new NBD connections see the new size and use its end', async () => {
    const [node1, node2] = nodes as [Node, Node];
    await core.createNamespacedSecret({
      namespace: NAMESPACE,
      body: {
        metadata: { name: secretName },
        data: { credential: Buffer.alloc(32, 0x3c).toString('base64') },
      },
    });
    const created = await volumes.create(
      newVolume(name, {
        sizeBytes: SIZE,
        numberOfReplicas: 2,
        accessMode: 'ReadWriteOnce',
        volumeMode: 'Block',
        engines: [{ node: node1.name }],
      }),
    );
    await volumes.replaceStatus({
      ...created,
      status: {
        epoch: 1,
        replicas: nodes.map((n) => ({ node: n.name, address: n.address, mode: 'ReadWrite' as const })),
      },
    });
    node1.reconciler = reconcilerFor(node1, pool);
    node2.reconciler = reconcilerFor(node2, new RecordingPool());
    await node1.reconciler.start();
    await node2.reconciler.start();

    await eventually(
      async () => ((await pool.list()).some((e) => e.volume === name) ? true : undefined),
      20_000,
    );
    const before = await eventually(() => connect(), 10_000);
    expect(before.size).toBe(BigInt(SIZE));
    const oldLast = Buffer.alloc(4096, 0x11);
    expect(
      (await before.request({ command: NBD_CMD.WRITE, offset: SIZE - 4096, payload: oldLast })).errno,
    ).toBe(0);

    // node-2's data plane is down for now: its replica cannot grow.
    await node2.reconciler.stop();

    // The controller's part of an expansion: raise spec.sizeBytes (conflicts with the engine's
    // status writes are retried on a fresh read).
    await eventually(async () => {
      const current = await volumes.get(name);
      await volumes.replace({ ...current, spec: { ...current.spec, sizeBytes: BIG } });
      return true;
    });

    // node-1 grows its replica, but the engine waits for node-2's: writes past the old end would fail there.
    await eventually(async () =>
      (await readMetadata(join(node1.dataDir, name))).sizeBytes === BIG ? true : undefined,
    );
    expect((await pool.resize(name))?.waiting).toContain(node2.name);
    expect((await connect()).size).toBe(BigInt(SIZE));
    expect((await readMetadata(join(node2.dataDir, name))).sizeBytes).toBe(SIZE);

    node2.reconciler = reconcilerFor(node2, new RecordingPool());
    await node2.reconciler.start();

    const after = await eventually(async () => {
      const c = await connect();
      if (c.size === BigInt(BIG)) return c;
      c.close();
      return undefined;
    }, 20_000);
    const info = await run(
      'nbdinfo',
      ['--size', `nbd+unix:///${name}?socket=${engineSocketPath(runDir, name)}`],
      {
        timeoutMs: 20_000,
      },
    );
    expect(info.stdout.trim()).toBe(String(BIG));

    const newLast = Buffer.alloc(4096, 0x22);
    expect(
      (await after.request({ command: NBD_CMD.WRITE, offset: BIG - 4096, payload: newLast })).errno,
    ).toBe(0);
    expect((await after.request({ command: NBD_CMD.FLUSH })).errno).toBe(0);
    expect((await after.request({ command: NBD_CMD.READ, offset: BIG - 4096, length: 4096 })).data).toEqual(
      newLast,
    );
    expect((await after.request({ command: NBD_CMD.READ, offset: SIZE - 4096, length: 4096 })).data).toEqual(
      oldLast,
    );
    // The connection from before keeps the size it negotiated.
    expect((await before.request({ command: NBD_CMD.READ, offset: BIG - 4096, length: 4096 })).errno).toBe(
      NBD_ERRNO.EINVAL,
    );
    expect((await before.request({ command: NBD_CMD.READ, offset: SIZE - 4096, length: 4096 })).data).toEqual(
      oldLast,
    );

    for (const node of nodes) {
      const dir = join(node.dataDir, name);
      expect((await readMetadata(dir)).sizeBytes).toBe(BIG);
      expect(statSync(join(dir, 'data')).size).toBe(BIG);
    }
    const engine = (await pool.list()).find((e) => e.volume === name);
    expect(engine?.sizeBytes).toBe(BIG);
    // No replica was fenced on the way.
    expect((await volumes.get(name)).status?.replicas?.map((r) => r.mode)).toEqual([
      'ReadWrite',
      'ReadWrite',
    ]);
  });
});
