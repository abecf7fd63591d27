/**
 * `npm run bench -- migration`: live migrations through the real stack (kube-apiserver, the CSI
 * controller, the migrator, the data plane on two simulated nodes; KubeVirt and the kubelet played
 * by test/harness/kubevirt-actor.ts), one after another and then 5 at once:
 * - target_ready: ControllerPublishVolume on the target called → returned (the target engine
 *   serves; the record says TargetReady);
 * - decision: the source launcher's termination written → the Volume shows one engine and the
 *   record ended (the loser fenced at every replica);
 * - dual_engine: the record's targetReadyAt → endedAt (paced by the benchmark's own steps);
 * and the migrator's CPU and memory with 100 idle volumes. The reference, in the same run: a pod
 * status write seen through a watch by this process — the floor of any decision made from a pod.
 * Targets: target ready ≤ 1 s p99, decision ≤ 1 s p99.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig, makeInformer, type V1Pod } from '@kubernetes/client-node';
import { installCrds } from '../lib/kube/manifests.js';
import { VolumeClient } from '../lib/kube/volumes.js';
import { packageRoot } from '../lib/paths.js';
import { createBoundBlockPv } from '../test/harness/bound-pv.js';
import { CsiClient, retrying } from '../test/harness/csi-client.js';
import { CsiStack } from '../test/harness/csi-stack.js';
import { KubeVirtActor } from '../test/harness/kubevirt-actor.js';
import { cpuUse, snapshot } from './cpu.js';
import { Cleanup } from './dataplane-setup.js';
import { startStackControlPlane } from './stack-setup.js';
import { percentile, round } from './stats.js';

const MiB = 1024 * 1024;
const block = { block: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };
const now = () => performance.now();
const seconds = (from: number) => (now() - from) / 1000;
const p = (samples: number[], pct: number) => round(percentile(samples, pct));

interface Sample {
  targetReady: number;
  decision: number;
  dualEngine: number;
}

class Migrations {
  readonly #volumes: VolumeClient;
  readonly #core: CoreV1Api;
  #next = 0;

  constructor(
    readonly kc: KubeConfig,
    readonly stack: CsiStack,
    readonly controller: CsiClient,
    readonly namespace: string,
    readonly cleanup: Cleanup,
  ) {
    this.#volumes = new VolumeClient(kc);
    this.#core = kc.makeApiClient(CoreV1Api);
  }

  async one(): Promise<Sample> {
    const tag = `b${this.#next++}`;
    const [n1, n2] = this.stack.nodes.map((n) => n.name) as [string, string];
    const claim = `disk-${tag}`;
    const kv = new KubeVirtActor(this.kc, this.namespace, claim);
    const created = await retrying(() =>
      this.controller.call<{ volume: { volume_id: string } }>('Controller', 'CreateVolume', {
        name: `pvc-${tag}-${Date.now()}`,
        capacity_range: { required_bytes: String(16 * MiB) },
        volume_capabilities: [block],
        parameters: { numberOfReplicas: '2', migratable: 'true' },
      }),
    );
    const id = created.volume.volume_id;
    this.cleanup.add(`DeleteVolume ${id}`, () =>
      retrying(() => this.controller.call('Controller', 'DeleteVolume', { volume_id: id })),
    );
    await createBoundBlockPv(this.#core, id, { namespace: this.namespace, name: claim }, '16Mi');
    this.cleanup.add(`PV ${id}`, () => this.#core.deletePersistentVolume({ name: id }).then(() => undefined));
    const publish = (node: string) =>
      retrying(() =>
        this.controller.call('Controller', 'ControllerPublishVolume', {
          volume_id: id,
          node_id: node,
          volume_capability: block,
        }),
      );
    const vm = `vm-${tag}`;
    const uid = await kv.createVmi(vm, n1);
    await kv.createLauncher(`src-${tag}`, n1, vm, uid);
    await kv.setPodPhase(`src-${tag}`, 'Running');
    await publish(n1);
    const vmimUid = await kv.createMigration(`mig-${tag}`, vm);
    await kv.createLauncher(`dst-${tag}`, n2, vm, uid, vmimUid);
    await kv.setPodPhase(`dst-${tag}`, 'Running');
    let t = now();
    await publish(n2);
    const targetReady = seconds(t);
    this.cleanup.add(`ControllerUnpublishVolume ${id}`, () =>
      retrying(() =>
        this.controller.call('Controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: n2 }),
      ),
    );
    await kv.setMigrationPhase(`mig-${tag}`, 'Succeeded', {
      sourceNode: n1,
      targetNode: n2,
      completed: true,
    });
    t = now();
    await kv.setPodPhase(`src-${tag}`, 'Succeeded');
    for (;;) {
      const v = await this.#volumes.get(id);
      const engines = v.status?.engines ?? [];
      if (v.status?.migration === undefined && v.status?.lastMigration && engines.length === 1) {
        const decision = seconds(t);
        const last = v.status.lastMigration;
        if (last.decision !== 'Confirm')
          throw new Error(`${id}: ${last.decision} (${last.reason}), not Confirm`);
        const dualEngine = (Date.parse(last.endedAt ?? '') - Date.parse(last.targetReadyAt ?? '')) / 1000;
        return { targetReady, decision, dualEngine };
      }
      if (seconds(t) > 30) throw new Error(`${id}: no decision within 30 s`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** The reference: a pod status write until this process's watch delivers it. */
async function watchLatency(kc: KubeConfig, namespace: string, count: number): Promise<number[]> {
  const core = kc.makeApiClient(CoreV1Api);
  const name = 'watch-reference';
  await core.createNamespacedPod({
    namespace,
    body: { metadata: { name }, spec: { containers: [{ name: 'c', image: 'none' }] } },
  });
  const informer = makeInformer<V1Pod>(kc, `/api/v1/namespaces/${namespace}/pods`, () =>
    core.listNamespacedPod({ namespace }),
  );
  let waiting: { phase: string; resolve: () => void } | undefined;
  informer.on('update', (pod) => {
    if (waiting && pod.metadata?.name === name && pod.status?.phase === waiting.phase) waiting.resolve();
  });
  await informer.start();
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const phase = i % 2 === 0 ? 'Running' : 'Pending';
    const seen = new Promise<void>((resolve) => (waiting = { phase, resolve }));
    const t = now();
    const pod = await core.readNamespacedPod({ name, namespace });
    pod.status = { ...pod.status, phase };
    await core.replaceNamespacedPodStatus({ name, namespace, body: pod });
    await seen;
    samples.push(seconds(t));
  }
  await informer.stop();
  return samples;
}

async function migratorProc(stack: CsiStack): Promise<number> {
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (args[0] === process.execPath && args.includes('migrator') && args.includes(stack.namespace))
      return pid;
  }
  throw new Error('the migrator process was not found');
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

export async function benchMigration(): Promise<Record<string, unknown>> {
  const sequential = Number(process.env.TANDEM_BENCH_MIGRATIONS ?? 10);
  const idleVolumes = Number(process.env.TANDEM_BENCH_IDLE_VOLUMES ?? 100);
  const cleanup = new Cleanup();
  try {
    const root = await mkdtemp(join(tmpdir(), 'tandem-bench-migration-'));
    cleanup.add('scratch folder', () => rm(root, { recursive: true, force: true }));
    const kc = await startStackControlPlane(join(root, 'control-plane'), cleanup);
    await installCrds(kc, join(packageRoot(), 'lab', 'kubevirt'));
    const stack = await CsiStack.start(2, 'bench-mig', { migratorArgs: ['--resync-interval', '5s'] });
    cleanup.add('CSI stack', () => stack.destroy());
    await stack.startMigrator();
    const namespace = 'vms';
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    const controller = new CsiClient(stack.controllerSocket);
    cleanup.add('controller client', async () => controller.close());
    const migrations = new Migrations(kc, stack, controller, namespace, cleanup);

    const reference = await watchLatency(kc, namespace, 50);
    const one: Sample[] = [];
    for (let i = 0; i < sequential; i++) {
      one.push(await migrations.one());
      process.stderr.write(
        `sequential ${i + 1}/${sequential}: decision ${one.at(-1)?.decision.toFixed(3)} s\n`,
      );
    }
    const five: Sample[] = [];
    for (let round5 = 0; round5 < 2; round5++)
      five.push(...(await Promise.all(Array.from({ length: 5 }, () => migrations.one()))));

    // The migrator with many idle volumes: CPU over 20 s of doing nothing, and its memory.
    for (let i = 0; i < idleVolumes; i++)
      await retrying(() =>
        controller.call('Controller', 'CreateVolume', {
          name: `idle-${i}`,
          capacity_range: { required_bytes: String(MiB * 16) },
          volume_capabilities: [block],
          parameters: { numberOfReplicas: '1', migratable: 'true' },
        }),
      );
    const pid = await migratorProc(stack);
    await new Promise((r) => setTimeout(r, 5000));
    const before = await snapshot();
    await new Promise((r) => setTimeout(r, 20_000));
    const after = await snapshot();
    const cpu = cpuUse(before, after, 2, [{ name: 'migrator', pid }]);
    const all = [...one, ...five];
    const refP99 = percentile(reference, 99);
    const result = {
      migrations: all.length,
      target_ready_p50_s: p(
        all.map((s) => s.targetReady),
        50,
      ),
      target_ready_p99_s: p(
        all.map((s) => s.targetReady),
        99,
      ),
      decision_p50_s: p(
        all.map((s) => s.decision),
        50,
      ),
      decision_p99_s: p(
        all.map((s) => s.decision),
        99,
      ),
      sequential_decision_p99_s: p(
        one.map((s) => s.decision),
        99,
      ),
      concurrent5_decision_p99_s: p(
        five.map((s) => s.decision),
        99,
      ),
      dual_engine_p50_s: p(
        all.map((s) => s.dualEngine),
        50,
      ),
      reference_watch_p50_s: p(reference, 50),
      reference_watch_p99_s: round(refP99),
      decision_p99_to_watch_p99: round(
        percentile(
          all.map((s) => s.decision),
          99,
        ) / refP99,
      ),
      idle_volumes: idleVolumes + all.length,
      migrator_idle_cpu_percent: cpu.migrator ?? 0,
      migrator_rss_mib: round((await rssBytes(pid)) / MiB),
      target_ready_p99_ok:
        percentile(
          all.map((s) => s.targetReady),
          99,
        ) <= 1,
      decision_p99_ok:
        percentile(
          all.map((s) => s.decision),
          99,
        ) <= 1,
    };
    return result;
  } finally {
    await cleanup.run();
  }
}
