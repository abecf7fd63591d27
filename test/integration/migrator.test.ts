/**
 * The migrator against the real apiserver, the real data plane on three simulated nodes and the
 * CSI controller: each scenario starts a live migration of a migratable block volume the way
 * KubeVirt and the kubelet do (test/harness/kubevirt-actor.ts plays both, with KubeVirt's labels,
 * phases and status shapes), then produces one kind of evidence and checks the outcome: exactly
 * one engine left, the record ended with the right decision and reason, the loser fenced at the
 * replicas, the data intact, the Volume's printer columns true at each step.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, EventsV1Api } from '@kubernetes/client-node';
import { engineSocketPath } from '../../driver/csi/node-topology.js';
import { credentialSecretName } from '../../driver/dataplane/credentials.js';
import { ReplicaClient, ReplicaError } from '../../driver/replica/client.js';
import { META_FILE } from '../../driver/replica/metadata.js';
import { toolPath } from '../../lab/tools.js';
import type { MigrationRecord, Volume } from '../../lib/api/volume.js';
import { run } from '../../lib/exec.js';
import { installCrds } from '../../lib/kube/manifests.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { silentLogger } from '../../lib/log.js';
import { createBoundBlockPv } from '../harness/bound-pv.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';
import { CsiClient, retrying } from '../harness/csi-client.js';
import { CsiStack } from '../harness/csi-stack.js';
import { fioJobs, fioVerify } from '../harness/fio.js';
import { KubeVirtActor } from '../harness/kubevirt-actor.js';

const MiB = 1024 * 1024;
const block = { block: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };

describe('migrator: every migration ends in one fenced engine', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const volumes = new VolumeClient(kc);
  const namespace = uniqueName('mig');
  let stack: CsiStack;
  let controller: CsiClient;
  let n1 = '';
  let n2 = '';
  const pvs: string[] = [];

  beforeAll(async () => {
    stack = await CsiStack.start(3, uniqueName('mgr'), {
      migratorArgs: ['--migration-timeout', '10s', '--resync-interval', '1s'],
      dataplaneArgs: ['--node-lease-duration', '6s'],
    });
    [n1, n2] = stack.nodes.map((n) => n.name) as [string, string];
    controller = new CsiClient(stack.controllerSocket);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    // Two candidates for the Lease, as the Deployment's two replicas: one leads, one stands by.
    await stack.startMigrator('migrator');
    await stack.startMigrator('migrator:2');
    // After the migrator started (unless another test file installed them first): it notices
    // KubeVirt's CRDs appearing and starts watching VMIs and VMIMs then.
    await installCrds(kc, new URL('../../lab/kubevirt', import.meta.url).pathname);
  }, 180_000);

  afterAll(async () => {
    controller?.close();
    for (const pv of pvs) await core.deletePersistentVolume({ name: pv }).catch(() => undefined);
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    await stack?.destroy();
  }, 180_000);

  const publish = (id: string, node: string) =>
    retrying(() =>
      controller.call('Controller', 'ControllerPublishVolume', {
        volume_id: id,
        node_id: node,
        volume_capability: block,
      }),
    );
  const unpublish = (id: string, node: string) =>
    retrying(() =>
      controller.call('Controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: node }),
    );

  interface Migration {
    id: string;
    kv: KubeVirtActor;
    vm: string;
    vmiUid: string;
    vmim: string;
    pattern: Buffer;
    /** A replica link at the epoch both engines used, as the source engine holds it. */
    oldEpoch: number;
  }

  /** A VM on n1 writing its disk, then KubeVirt migrating it to n2 up to TargetReady. */
  async function startMigration(
    tag: string,
    targetPhase: 'Running' | 'Pending' = 'Running',
  ): Promise<Migration> {
    const claim = `disk-${tag}`;
    const kv = new KubeVirtActor(kc, namespace, claim);
    const created = await retrying(() =>
      controller.call<{ volume: { volume_id: string } }>('Controller', 'CreateVolume', {
        name: uniqueName(`pvc-${tag}`),
        capacity_range: { required_bytes: String(16 * MiB) },
        volume_capabilities: [block],
        parameters: { numberOfReplicas: '2', migratable: 'true' },
      }),
    );
    const id = created.volume.volume_id;
    pvs.push(id);
    // Every replica made on its node before the first engine starts. An engine that finds one
    // missing fences it, and a migration never rebuilds it, so the next test's node loss would
    // leave no readable replica. A data plane the previous test restarted is still catching up on
    // the volumes it had (seen in CI: SourceNodeLost, its replica made 0.2 s after the engine).
    await eventually(async () => {
      const replicas = (await volumes.get(id)).status?.replicas ?? [];
      const made = replicas.filter((r) => {
        const dataDir = stack.nodes.find((n) => n.name === r.node)?.dataDir;
        return dataDir !== undefined && existsSync(join(dataDir, id, META_FILE));
      });
      return replicas.length === 2 && made.length === 2 ? true : undefined;
    }, 30_000);
    await createBoundBlockPv(core, id, { namespace, name: claim }, '16Mi');
    const vm = `vm-${tag}`;
    const vmiUid = await kv.createVmi(vm, n1);
    await kv.createLauncher(`src-${tag}`, n1, vm, vmiUid);
    await kv.setPodPhase(`src-${tag}`, 'Running');
    await publish(id, n1);
    const pattern = randomBytes(MiB);
    const file = join(stack.dir, `${tag}.bin`);
    await writeFile(file, pattern);
    await nbdcopy(file, socketUri(n1, id));

    const vmim = `mig-${tag}`;
    const vmimUid = await kv.createMigration(vmim, vm);
    await kv.setMigrationPhase(vmim, 'Scheduling');
    await kv.createLauncher(`dst-${tag}`, n2, vm, vmiUid, vmimUid);
    if (targetPhase === 'Running') await kv.setPodPhase(`dst-${tag}`, 'Running');
    await publish(id, n2);
    const ready = await eventually(async () => {
      const v = await volumes.get(id);
      return v.status?.migration?.phase === 'TargetReady' ? v : undefined;
    }, 20_000);
    const record = ready.status?.migration as MigrationRecord;
    expect(record).toMatchObject({
      source: n1,
      target: n2,
      vmiUID: vmiUid,
      vmName: vm,
      vmNamespace: namespace,
    });
    expect(ready.status?.state).toBe('Migrating');
    await kv.setMigrationPhase(vmim, 'Running', {
      sourceNode: n1,
      targetNode: n2,
      sourcePod: `src-${tag}`,
      targetPod: `dst-${tag}`,
      migrationUid: vmimUid,
    });
    return { id, kv, vm, vmiUid, vmim, pattern, oldEpoch: ready.status?.epoch ?? 0 };
  }

  const socketUri = (node: string, id: string) =>
    `nbd+unix:///${id}?socket=${engineSocketPath(stack.node(node).engineDir, id)}`;

  /** nbdcopy once the engine's socket exists (the engine registers a moment before it listens). */
  async function nbdcopy(from: string, to: string): Promise<void> {
    for (const uri of [from, to]) {
      const socket = /socket=([^&]+)$/.exec(uri)?.[1];
      if (socket) await eventually(() => (existsSync(socket) ? true : undefined), 10_000);
    }
    await run('nbdcopy', ['--flush', from, to], { timeoutMs: 30_000 });
  }

  // A lost node is decided once its Lease (6 s here) expires, then fenced; 30 s was once not
  // enough on a loaded 2-core CI machine (SourceNodeLost, 2026-12-03).
  const ENDED_WITHIN_MS = 60_000;

  /** Waits for the migration to end; checks one engine, the record, the state, the data. */
  async function ended(m: Migration, decision: string, reason: string, winner: string | undefined) {
    const volume = await eventually(async () => {
      const v = await volumes.get(m.id);
      const engines = (v.status?.engines ?? []).map((e) => e.node);
      const settled =
        winner === undefined ? engines.length === 0 : engines.length === 1 && engines[0] === winner;
      return v.status?.migration === undefined && v.status?.lastMigration && settled ? v : undefined;
    }, ENDED_WITHIN_MS);
    expect(volume.status?.lastMigration).toMatchObject({ decision, reason, source: n1, target: n2 });
    expect(volume.spec.engines).toEqual(winner === undefined ? [] : [{ node: winner }]);
    expect(volume.status?.lastMigration?.fenceEpoch).toBeGreaterThan(m.oldEpoch);
    expect(volume.status?.epoch ?? 0).toBeGreaterThanOrEqual(volume.status?.lastMigration?.fenceEpoch ?? 0);
    await fencedAtEveryReplica(m, volume);
    if (winner !== undefined) {
      const back = join(stack.dir, `${m.id}.back`);
      await nbdcopy(socketUri(winner, m.id), back);
      expect((await readFile(back)).subarray(0, MiB).equals(m.pattern)).toBe(true);
      await eventually(async () =>
        (await volumes.get(m.id)).status?.state === 'Attached' ? true : undefined,
      );
      const columns = await kubectlColumns(m.id);
      expect(columns).toMatchObject({ STATE: 'Attached', NODE: winner, 'MIGRATION TARGET': '' });
    }
    return volume;
  }

  /** A write stamped with the epoch both engines used is refused by every replica. */
  async function fencedAtEveryReplica(m: Migration, volume: Volume) {
    const secret = await core.readNamespacedSecret({
      name: credentialSecretName(m.id),
      namespace: stack.namespace,
    });
    const credential = Buffer.from(secret.data?.credential ?? '', 'base64');
    for (const replica of volume.status?.replicas ?? []) {
      if (replica.mode === 'Failed' || !replica.address) continue;
      const attempt = ReplicaClient.connect({
        address: replica.address,
        volume: m.id,
        engineId: 'old-source-engine',
        secret: credential,
        epoch: BigInt(m.oldEpoch),
        requestTimeoutMs: 3000,
        log: silentLogger(),
      }).then(async (client) => {
        try {
          await client.write(0, Buffer.alloc(4096, 0xee), true);
        } finally {
          client.close();
        }
      });
      await expect(attempt).rejects.toBeInstanceOf(ReplicaError);
      await expect(attempt).rejects.toMatchObject({ status: 'STALE_EPOCH' });
    }
  }

  async function kubectlColumns(id: string): Promise<Record<string, string>> {
    const kubeconfig = process.env.TANDEM_TEST_KUBECONFIG as string;
    const { stdout } = await run(toolPath('kubectl'), ['--kubeconfig', kubeconfig, 'get', 'volumes', id], {
      timeoutMs: 20_000,
    });
    const [header, row] = stdout.trim().split('\n') as [string, string];
    // kubectl aligns every value under its column's header: cut the row at the headers' offsets.
    const starts = [...header.matchAll(/(\S+(?: \S+)*)/g)].map((m) => ({
      name: m[1] as string,
      at: m.index,
    }));
    return Object.fromEntries(
      starts.map((c, i) => [c.name, row.slice(c.at, starts[i + 1]?.at ?? row.length).trim()]),
    );
  }

  test('success: VMIM Succeeded, the source launcher exits → confirmed, source fenced', async () => {
    const m = await startMigration('ok');
    // The guest keeps writing through the source engine while both engines serve (fio verify, its
    // own checksums), past the pattern at the start of the disk.
    const fioArgs = ['--offset=2M', '--randrepeat=1'];
    const writing = await fioVerify(socketUri(n1, m.id), { size: '8M', cwd: stack.dir, extra: fioArgs });
    expect(writing.code).toBe(0);
    expect(fioJobs(writing.stdout)[0]?.error).toBe(0);
    const during = await kubectlColumns(m.id);
    expect(during).toMatchObject({ STATE: 'Migrating', NODE: n1, 'MIGRATION TARGET': n2 });
    await m.kv.setMigrationPhase(m.vmim, 'Succeeded', {
      sourceNode: n1,
      targetNode: n2,
      completed: true,
    });
    await m.kv.setVmiStatus(m.vm, { nodeName: n2 });
    // KubeVirt's order: the VMIM succeeds, then the source launcher exits.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await volumes.get(m.id)).status?.migration).toBeDefined(); // waits for the source pod
    await m.kv.setPodPhase('src-ok', 'Succeeded');
    const volume = await ended(m, 'Confirm', 'MigrationSucceeded', n2);
    expect(volume.status?.lastMigration?.vmimName).toBe(m.vmim);
    // Everything fio wrote through the source reads back right through the target...
    const checking = await fioVerify(socketUri(n2, m.id), {
      size: '8M',
      cwd: stack.dir,
      extra: [...fioArgs, '--verify_only=1'],
    });
    expect(checking.code).toBe(0);
    expect(fioJobs(checking.stdout)[0]?.error).toBe(0);
    // ...and the replicas are identical, byte for byte (flushed: fio's nbd engine flushes at the end).
    const files = (volume.status?.replicas ?? []).map((r) => join(stack.node(r.node).dataDir, m.id, 'data'));
    expect(files).toHaveLength(2);
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', ...files], {
      allowFailure: true,
    });
    expect(cmp.stdout.trim()).toBe('Images are identical.');
    // The kubelet's and the attacher's later unpublish of the source is a no-op that succeeds.
    await unpublish(m.id, n1);
    expect((await volumes.get(m.id)).spec.engines).toEqual([{ node: n2 }]);
    // Exactly one of the two migrators decided and measured it; the other stood by.
    const both = await Promise.all([scrape('migrator'), scrape('migrator:2')]);
    const leaders = both.filter(leads);
    expect(leaders).toHaveLength(1);
    const metrics = leaders[0] as string;
    expect(both.filter((text) => /tandem_migrations_total\{/.test(text))).toHaveLength(1);
    // The Event on the VMI (the claim is only a claimRef here, so its Events go to the Volume).
    const vmiEvent = async () => {
      const events = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace });
      const found = events.items.some(
        (e) =>
          e.reason === 'MigrationConfirmed' &&
          e.regarding?.kind === 'VirtualMachineInstance' &&
          e.regarding.name === m.vm,
      );
      return found ? true : undefined;
    };
    await eventually(vmiEvent, 15_000);
    expect(metrics).toMatch(
      /tandem_migrations_total\{result="confirmed",reason="MigrationSucceeded"[^}]*\} 1/,
    );
    expect(metrics).toMatch(
      /tandem_migration_decision_latency_seconds_count\{[^}]*result="confirmed"[^}]*\} [1-9]/,
    );
  }, 180_000);

  test('the target launcher is deleted → rolled back, target fenced, the VM keeps running on the source', async () => {
    const m = await startMigration('del');
    await m.kv.deletePod('dst-del');
    await ended(m, 'Rollback', 'TargetPodTerminated', n1);
  }, 180_000);

  test('VMIM Failed while the target pod ended Succeeded → rolled back (KubeVirt state over pod phase)', async () => {
    const m = await startMigration('fail');
    // KubeVirt's order: the VMIM fails (the target pod still runs, so nothing is removed yet),
    // then the target launcher exits — Succeeded, which a pod-phase rule would read as success.
    await m.kv.setMigrationPhase(m.vmim, 'Failed', {
      sourceNode: n1,
      targetNode: n2,
      failed: true,
      completed: true,
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect((await volumes.get(m.id)).status?.migration).toBeDefined();
    await m.kv.setPodPhase('dst-fail', 'Succeeded');
    await ended(m, 'Rollback', 'MigrationFailed', n1);
  }, 180_000);

  test('ControllerUnpublishVolume of the source first → confirmed by the controller, carried out by the migrator', async () => {
    const m = await startMigration('unpub');
    await unpublish(m.id, n1);
    const volume = await ended(m, 'Confirm', 'SourceUnpublished', n2);
    expect(volume.status?.lastMigration?.decidedBy).toBe('controller');
  }, 180_000);

  test('the target pod never runs → rolled back after --migration-timeout', async () => {
    const m = await startMigration('late', 'Pending');
    const volume = await ended(m, 'Rollback', 'Timeout', n1);
    expect(volume.status?.lastMigration?.evidence).toMatch(/never ran/);
  }, 180_000);

  test('the leading migrator SIGKILLed mid-migration: the standby takes the Lease and reaches the decision', async () => {
    const m = await startMigration('kill');
    const leader = await leadingMigrator();
    await stack.kill(leader);
    await m.kv.deletePod('src-kill');
    await ended(m, 'Confirm', 'SourcePodTerminated', n2);
    await stack.startMigrator(leader);
  }, 180_000);

  type MigratorRole = 'migrator' | 'migrator:2';
  const scrape = async (role: MigratorRole) =>
    (await fetch(`http://127.0.0.1:${stack.migratorMetricsPort(role)}/metrics`)).text();
  const leads = (metrics: string) => /tandem_migrator_leader\{[^}]*\} 1/.test(metrics);

  /** The role whose migrator holds the Lease (its leader gauge is 1). */
  async function leadingMigrator(): Promise<MigratorRole> {
    return eventually(async () => {
      for (const role of ['migrator', 'migrator:2'] as const) if (leads(await scrape(role))) return role;
      return undefined;
    });
  }

  test('the target node is lost → rolled back', async () => {
    const m = await startMigration('lost');
    await stack.kill(`dataplane:${n2}`);
    try {
      await ended(m, 'Rollback', 'TargetNodeLost', n1);
    } finally {
      await stack.startDataplane(n2);
    }
  }, 180_000);

  test('the source node is lost while the target runs → confirmed', async () => {
    const m = await startMigration('srclost');
    await stack.kill(`dataplane:${n1}`);
    try {
      await ended(m, 'Confirm', 'SourceNodeLost', n2);
    } finally {
      await stack.startDataplane(n1);
    }
  }, 180_000);

  test('both launcher pods gone: the engine stays where the VMI last ran', async () => {
    const m = await startMigration('gone');
    // The VMI says it runs on the target (KubeVirt moved it), then both pods vanish at once.
    await m.kv.setVmiStatus(m.vm, { nodeName: n2 });
    await Promise.all([m.kv.deletePod('src-gone'), m.kv.deletePod('dst-gone')]);
    await ended(m, 'Confirm', 'BothPodsGone', n2);
  }, 180_000);

  test('no KubeVirt objects at all (pods only): the source launcher exits → confirmed', async () => {
    const m = await startMigration('pods');
    const custom = kc.makeApiClient(CustomObjectsApi);
    for (const [plural, name] of [
      ['virtualmachineinstancemigrations', m.vmim],
      ['virtualmachineinstances', m.vm],
    ] as const)
      await custom.deleteNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace,
        plural,
        name,
      });
    await m.kv.setPodPhase('src-pods', 'Succeeded');
    await ended(m, 'Confirm', 'SourcePodTerminated', n2);
  }, 180_000);
});
