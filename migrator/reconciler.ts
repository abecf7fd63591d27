/**
 * The leading migrator's level-triggered reconciler. Every change of a Volume, a KubeVirt pod, a
 * VMI, a VMIM or a node Lease queues the volumes it may concern; one reconcile of a volume reads
 * the caches, and either keeps the Volume's status true to its engines (state, node), or moves
 * its migration on: TargetReady once the target engine serves, a decision from the evidence
 * (migrator/decide.ts), the decision carried out (migrator/execute.ts). A periodic resync catches
 * what no event announces (a timeout, a Lease expiring).
 */
import type { KubeConfig, V1Lease, V1Pod } from '@kubernetes/client-node';
import { CoordinationV1Api, CoreV1Api, makeInformer } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { EventSink } from '../driver/controller/volume-events.js';
import { eventSubject } from '../driver/controller/volume-events.js';
import { isAlive, NODE_LABEL, parseNodeLease } from '../driver/dataplane/node-registration.js';
import { WorkQueue } from '../driver/dataplane/work-queue.js';
import type { MigrationRecord, Volume } from '../lib/api/volume.js';
import { errorMessage } from '../lib/errors.js';
import type { EventSubject } from '../lib/kube/events.js';
import { type Cache, keepWatching } from '../lib/kube/informer.js';
import { VolumeClient } from '../lib/kube/volumes.js';
import { KUBEVIRT_POD_SELECTOR } from '../lib/kubevirt/vocabulary.js';
import { withObservedStatus } from '../lib/migration/observed-state.js';
import { decide } from './decide.js';
import { type ClusterSnapshot, gatherEvidence } from './evidence.js';
import { carryOut, type ExecutorDeps, recordDecision } from './execute.js';
import type { Fencer } from './fence.js';
import { KubeVirtWatch } from './kubevirt-watch.js';
import type { MigratorMetrics } from './metrics.js';
import { updateVolume } from './volume-store.js';

export interface ReconcilerOptions {
  kc: KubeConfig;
  namespace: string;
  migrationTimeoutMs: number;
  resyncIntervalMs: number;
  fencer: Fencer;
  metrics: MigratorMetrics;
  events: EventSink;
  log: Logger;
  now?: () => number;
}

export class MigrationReconciler {
  readonly #o: ReconcilerOptions;
  readonly #volumes: VolumeClient;
  readonly #volumeCache: Cache<Volume>;
  readonly #pods: Cache<V1Pod>;
  readonly #leases: Cache<V1Lease>;
  readonly #kubevirt: KubeVirtWatch;
  readonly #queue: WorkQueue;
  readonly #core: CoreV1Api;
  readonly #executor: ExecutorDeps;
  /** When something that may decide a volume's migration was last seen (decision latency). */
  readonly #lastEvent = new Map<string, number>();
  readonly #announced = new Set<string>();

  constructor(options: ReconcilerOptions) {
    this.#o = options;
    const { kc, namespace } = options;
    this.#volumes = new VolumeClient(kc);
    this.#volumeCache = this.#volumes.informer();
    const core = kc.makeApiClient(CoreV1Api);
    this.#core = core;
    const coordination = kc.makeApiClient(CoordinationV1Api);
    this.#pods = makeInformer<V1Pod>(
      kc,
      '/api/v1/pods',
      () => core.listPodForAllNamespaces({ labelSelector: KUBEVIRT_POD_SELECTOR }),
      KUBEVIRT_POD_SELECTOR,
    );
    this.#leases = makeInformer<V1Lease>(
      kc,
      `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
      () => coordination.listNamespacedLease({ namespace, labelSelector: NODE_LABEL }),
      NODE_LABEL,
    );
    this.#kubevirt = new KubeVirtWatch(kc, options.log, () => this.#touchMigrating());
    // Reconciles mostly wait on API round trips: several at once overlap them.
    this.#queue = new WorkQueue((name) => this.#reconcile(name), {
      concurrency: 8,
      initialBackoffMs: 200,
      maxBackoffMs: 10_000,
      log: options.log,
    });
    this.#executor = {
      volumes: this.#volumes,
      fencer: options.fencer,
      metrics: options.metrics,
      events: options.events,
      log: options.log,
      vmiSubject: (record) => this.#vmiSubject(record),
      now: options.now,
    };
  }

  /** Runs until `signal` aborts (leadership lost or shutdown). */
  async run(signal: AbortSignal): Promise<void> {
    const { log } = this.#o;
    const volumeName = (v: Volume) => v.metadata.name;
    // Nothing is reconciled before every cache has listed once: a volume looked at while the pod
    // cache is still empty would look like a migration whose pods are all gone.
    const watches = await Promise.all([
      keepWatching(this.#volumeCache, { name: 'volumes', logger: log }),
      keepWatching(this.#pods, { name: 'kubevirt-pods', logger: log }),
      keepWatching(this.#leases, { name: 'node-leases', logger: log }),
    ]);
    await this.#kubevirt.start();
    for (const event of ['add', 'update'] as const)
      this.#volumeCache.on(event, (v: Volume) => this.#queue.add(volumeName(v)));
    this.#volumeCache.on('delete', (v: Volume) => {
      this.#lastEvent.delete(volumeName(v));
      this.#announced.delete(volumeName(v));
    });
    for (const event of ['add', 'update', 'delete'] as const) {
      this.#pods.on(event, () => this.#touchMigrating());
      this.#leases.on(event, () => this.#touchMigrating());
    }
    const timer = setInterval(() => {
      for (const v of this.#volumeCache.list()) this.#queue.add(v.metadata.name);
    }, this.#o.resyncIntervalMs);
    for (const v of this.#volumeCache.list()) this.#queue.add(v.metadata.name);
    this.#o.metrics.activeMigrations = () =>
      this.#volumeCache.list().filter((v) => v.status?.migration).length;
    log.info('leading: reconciling migrations');
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    clearInterval(timer);
    this.#o.metrics.activeMigrations = () => 0;
    await this.#queue.stop();
    await this.#kubevirt.stop();
    await Promise.all(watches.map((w) => w.stop()));
  }

  /** Everything that may concern a migration queues every volume that has one (there are few). */
  #touchMigrating(): void {
    const now = (this.#o.now ?? Date.now)();
    for (const v of this.#volumeCache.list()) {
      if (v.status?.migration === undefined) continue;
      this.#lastEvent.set(v.metadata.name, now);
      this.#queue.add(v.metadata.name);
    }
  }

  #snapshot(): ClusterSnapshot {
    const now = (this.#o.now ?? Date.now)();
    const aliveNodes = new Set<string>();
    for (const lease of this.#leases.list()) {
      const record = parseNodeLease(lease);
      if (record !== undefined && isAlive(record, now)) aliveNodes.add(record.node);
    }
    return { pods: [...this.#pods.list()], ...this.#kubevirt.lists(), aliveNodes };
  }

  async #reconcile(name: string): Promise<void> {
    try {
      await this.#reconcileOnce(name);
    } catch (err) {
      this.#o.metrics.reconcileErrors.inc();
      this.#o.log.warn({ volume: name, err: errorMessage(err) }, 'reconcile failed; retrying');
      throw err;
    }
  }

  async #reconcileOnce(name: string): Promise<void> {
    const cached = this.#volumeCache.get(name);
    if (cached === undefined) return;
    const record = cached.status?.migration;
    if (record === undefined) {
      if (withObservedStatus(cached) !== undefined)
        await updateVolume(this.#volumes, name, 'status', (v) => withObservedStatus(v));
      return;
    }
    if (record.decision !== undefined) {
      await carryOut(this.#executor, name, cached);
      return;
    }
    this.#announceStart(cached, record);
    const now = (this.#o.now ?? Date.now)();
    const serving = (cached.status?.engines ?? []).some((e) => e.node === record.target);
    const evidence = gatherEvidence(record, this.#snapshot(), serving, this.#o.migrationTimeoutMs, now);
    let verdict = decide(evidence);
    if (verdict.decision !== undefined) {
      // A decision is final: the pods it rests on are read once more from the API itself, so a
      // cache that lags (a relist after a dropped watch) cannot remove an engine a pod still uses.
      const pods = await this.#core.listNamespacedPod({
        namespace: record.vmNamespace ?? 'default',
        labelSelector: KUBEVIRT_POD_SELECTOR,
      });
      const fresh = { ...this.#snapshot(), pods: pods.items };
      const again = decide(gatherEvidence(record, fresh, serving, this.#o.migrationTimeoutMs, now));
      if (again.decision !== verdict.decision) {
        this.#o.log.info(
          { volume: name, cached: verdict.decision },
          'the API disagrees with the cache; deciding later',
        );
        this.#queue.add(name);
        return;
      }
      verdict = again;
    }
    if (verdict.decision === undefined) {
      await this.#progress(name, serving, evidence.kubevirt?.vmimName);
      this.#o.log.debug({ volume: name, waiting: verdict.waiting }, 'migration in progress');
      return;
    }
    this.#o.log.info(
      { volume: name, decision: verdict.decision, reason: verdict.reason, evidence: verdict.evidence },
      'migration decided',
    );
    const decided = await recordDecision(
      this.#executor,
      name,
      { ...verdict, observedAt: this.#lastEvent.get(name) ?? now, decidedBy: 'migrator' },
      cached,
    );
    await carryOut(this.#executor, name, decided);
  }

  /** Records TargetReady, the VMIM's name, and the observed state, once each is known. */
  async #progress(name: string, serving: boolean, vmimName: string | undefined): Promise<void> {
    const now = new Date((this.#o.now ?? Date.now)()).toISOString();
    await updateVolume(this.#volumes, name, 'status', (volume) => {
      const m = volume.status?.migration;
      if (m === undefined || m.decision !== undefined) return undefined;
      let changed = false;
      const targetUp = (volume.status?.engines ?? []).some((e) => e.node === m.target);
      if (serving && targetUp && (m.phase ?? 'Started') === 'Started') {
        m.phase = 'TargetReady';
        m.targetReadyAt = now;
        changed = true;
      }
      if (vmimName !== undefined && m.vmimName !== vmimName) {
        m.vmimName = vmimName;
        changed = true;
      }
      const observed = withObservedStatus(volume);
      return observed ?? (changed ? volume : undefined);
    });
  }

  #announceStart(volume: Volume, record: MigrationRecord): void {
    const key = `${volume.metadata.name}/${record.startedAt ?? ''}/${record.target}`;
    if (this.#announced.has(key)) return;
    this.#announced.add(key);
    const details = {
      type: 'Normal' as const,
      reason: 'MigrationStarted',
      message: `live migration of volume ${volume.metadata.name} from ${record.source} to ${record.target} started: a second engine on ${record.target} serves the same replicas${record.vmName ? ` for VM ${record.vmName}` : ''}`,
      action: 'Migrate',
    };
    this.#o.events.record(eventSubject(volume), details);
    const vmi = this.#vmiSubject(record);
    if (vmi !== undefined) this.#o.events.record(vmi, details);
  }

  #vmiSubject(record: MigrationRecord): EventSubject | undefined {
    const vmi = this.#kubevirt
      .lists()
      .vmis?.find((v) => v.metadata.namespace === record.vmNamespace && v.metadata.uid === record.vmiUID);
    if (vmi?.metadata.name === undefined) return undefined;
    return {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachineInstance',
      name: vmi.metadata.name,
      namespace: vmi.metadata.namespace,
      uid: vmi.metadata.uid,
    };
  }
}
