import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException, CoreV1Api } from '@kubernetes/client-node';
import { credentialFilePath, SecretCredentialSource } from '../../driver/dataplane/credentials.js';
import { dataplaneFinalizer, KubeVolumeWriter } from '../../driver/dataplane/finalizers.js';
import { DataplaneReconciler } from '../../driver/dataplane/reconciler.js';
import { readMetadata } from '../../driver/replica/metadata.js';
import { newVolume, type Volume } from '../../lib/api/volume.js';
import { type Cache, keepWatching } from '../../lib/kube/informer.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';
import { RecordingPool } from '../harness/recording-pool.js';

const NAMESPACE = 'tandem-system';
const MiB = 1 << 20;

describe('DataplaneReconciler against the real kube-apiserver', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const volumes = new VolumeClient(kc);
  const node = uniqueName('node');
  const finalizer = dataplaneFinalizer(node);
  const dataDir = mkdtempSync(join(tmpdir(), 'tandem-reconciler-it-'));
  const pool = new RecordingPool();
  const volumeNames: string[] = [];
  const secretNames: string[] = [];
  let informer: Cache<Volume>;
  let watching: { stop: () => Promise<void> };
  let reconciler: DataplaneReconciler;

  const makeReconciler = () =>
    new DataplaneReconciler({
      node,
      dataDir,
      runDir: '/run/tandem-test',
      volumes: informer,
      writer: new KubeVolumeWriter(kc),
      pool,
      credentials: new SecretCredentialSource(core),
      resyncIntervalMs: 300,
      initialBackoffMs: 100,
      maxBackoffMs: 400,
    });

  const createSecret = async (volume: string, credential: Buffer) => {
    const name = `tandem-volume-${volume}`;
    secretNames.push(name);
    await core.createNamespacedSecret({
      namespace: NAMESPACE,
      body: { metadata: { name }, data: { credential: credential.toString('base64') } },
    });
  };

  /** A Volume whose status places a replica on the test node (and optionally an engine). */
  const createVolume = async (name: string, engine: boolean): Promise<Volume> => {
    volumeNames.push(name);
    const created = await volumes.create(
      newVolume(name, {
        sizeBytes: 8 * MiB,
        numberOfReplicas: 1,
        accessMode: 'ReadWriteOnce',
        volumeMode: 'Block',
        ...(engine ? { engines: [{ node }] } : {}),
      }),
    );
    return volumes.replaceStatus({
      ...created,
      status: { epoch: 1, replicas: [{ node, address: '127.0.0.1:9500', mode: 'ReadWrite' }] },
    });
  };

  const gone = async (name: string) =>
    volumes.get(name).then(
      () => undefined,
      (err: unknown) => (err instanceof ApiException && err.code === 404 ? true : undefined),
    );

  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } }).catch((err: unknown) => {
      if (!(err instanceof ApiException && err.code === 409)) throw err;
    });
    informer = volumes.informer();
    watching = await keepWatching(informer, { name: 'volumes' });
    reconciler = makeReconciler();
    await reconciler.start();
  });

  afterAll(async () => {
    await reconciler.stop();
    await watching.stop();
    for (const name of volumeNames) {
      // Whatever the test left: drop our finalizer so the Volume can go.
      const v = await volumes.get(name).catch(() => undefined);
      if (v?.metadata.finalizers?.length)
        await new KubeVolumeWriter(kc)
          .setFinalizers(name, v.metadata.resourceVersion ?? '', [])
          .catch(() => undefined);
      await volumes.delete(name).catch(() => undefined);
    }
    for (const name of secretNames)
      await core.deleteNamespacedSecret({ name, namespace: NAMESPACE }).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates the replica and finalizer, starts the engine once, and tears everything down on delete', async () => {
    const name = uniqueName('rec');
    const credential = Buffer.alloc(32, 0x5a);
    await createSecret(name, credential);
    await createVolume(name, true);

    const meta = await eventually(() => readMetadata(join(dataDir, name)));
    expect(meta.sizeBytes).toBe(8 * MiB);
    expect(readFileSync(join(dataDir, name, 'secret'))).toEqual(credential);
    const credFile = credentialFilePath(dataDir, name);
    expect(readFileSync(credFile)).toEqual(credential);
    expect(statSync(credFile).mode & 0o777).toBe(0o600);
    await eventually(async () =>
      (await volumes.get(name)).metadata.finalizers?.includes(finalizer) ? true : undefined,
    );
    await eventually(() => (pool.running.has(name) ? true : undefined));
    expect(pool.running.get(name)).toMatchObject({
      join: false,
      credentialFile: credFile,
      nbdSocket: `/run/tandem-test/${name}.sock`,
    });

    // Several resyncs (every 300 ms) later: still exactly one start.
    await new Promise((r) => setTimeout(r, 1000));
    expect(pool.calls.filter((c) => c.includes(name))).toEqual([`start ${name} takeover`]);

    await volumes.delete(name);
    await eventually(() => gone(name));
    expect(pool.calls.filter((c) => c.includes(name))).toEqual([`start ${name} takeover`, `stop ${name}`]);
    expect(existsSync(join(dataDir, name))).toBe(false);
    expect(existsSync(credFile)).toBe(false);
  });

  it('a restarted reconciler converges without duplicating anything, then still tears down', async () => {
    const name = uniqueName('rst');
    await createSecret(name, Buffer.alloc(24, 0x11));
    await createVolume(name, true);
    await eventually(() => (pool.running.has(name) ? true : undefined));
    await eventually(async () =>
      (await volumes.get(name)).metadata.finalizers?.includes(finalizer) ? true : undefined,
    );
    // The replica's data file appears alongside the engine start, not necessarily before it.
    await eventually(() => (existsSync(join(dataDir, name, 'data')) ? true : undefined));
    const inode = statSync(join(dataDir, name, 'data')).ino;

    await reconciler.stop();
    reconciler = makeReconciler();
    await reconciler.start();
    await reconciler.idle();
    await new Promise((r) => setTimeout(r, 700));
    expect(pool.calls.filter((c) => c.includes(name))).toEqual([`start ${name} takeover`]);
    expect(statSync(join(dataDir, name, 'data')).ino).toBe(inode);
    expect((await volumes.get(name)).metadata.finalizers).toEqual([finalizer]);

    await volumes.delete(name);
    await eventually(() => gone(name));
    expect(existsSync(join(dataDir, name))).toBe(false);
    expect(pool.running.has(name)).toBe(false);
  });

  it('retries a Volume whose Secret is missing and converges once it appears', async () => {
    const name = uniqueName('nosec');
    await createVolume(name, false);
    await eventually(() => (reconciler.failures(name) >= 2 ? true : undefined));
    expect(existsSync(join(dataDir, name))).toBe(false);
    expect((await volumes.get(name)).metadata.finalizers ?? []).toEqual([]);

    await createSecret(name, Buffer.alloc(16, 0x22));
    const meta = await eventually(() => readMetadata(join(dataDir, name)));
    expect(meta.sizeBytes).toBe(8 * MiB);
    await eventually(async () =>
      (await volumes.get(name)).metadata.finalizers?.includes(finalizer) ? true : undefined,
    );
    expect(pool.running.has(name)).toBe(false); // no engine asked of this node

    await volumes.delete(name);
    await eventually(() => gone(name));
    expect(existsSync(join(dataDir, name))).toBe(false);
  });
});
