/**
 * Carries out decideShare for every ReadWriteMany Filesystem volume: the leading controller runs
 * it on every Volume change and on a short resync (a dead share manager is noticed by its
 * heartbeat, which changes nothing the Volume informer sees). Every step is derived from the
 * cluster's objects, so a controller that takes over mid-way continues where its predecessor
 * stopped; only which Events were already sent lives in memory (a new leader may repeat one).
 *
 * Moving the engine takes as long as an engine start (seconds): it runs beside the loop, one per
 * volume, so one slow node does not hold up every other volume's failover.
 */
import type { Volume } from '../../lib/api/volume.js';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { isAlive, type NodeRegistrationRecord } from '../dataplane/node-registration.js';
import type { ControllerCluster } from './cluster.js';
import type { ShareCluster } from './share-cluster.js';
import { moveShareEngine } from './share-engine.js';
import { decideShare, type ShareAction, type SharePodState } from './share-manager-decide.js';
import {
  type ShareManagerPodOptions,
  shareManagerPod,
  shareManagerService,
} from './share-manager-objects.js';
import type { ShareControllerMetrics } from './share-metrics.js';
import { type EventSink, eventSubject } from './volume-events.js';

export interface ShareReconcilerOptions {
  cluster: ControllerCluster;
  shares: ShareCluster;
  events: EventSink;
  log: Logger;
  pod: Omit<ShareManagerPodOptions, 'fsType'>;
  engineWaitMs?: number;
  now?: () => number;
  metrics?: ShareControllerMetrics;
}

/** First delay after the second failure in a row, doubling up to the maximum (the kubelet's numbers). */
const CRASH_BACKOFF_MS = 10_000;
const MAX_CRASH_BACKOFF_MS = 300_000;

export const servesShare = (volume: Volume): boolean => volume.spec.share !== undefined;

export class ShareReconciler {
  readonly #options: ShareReconcilerOptions;
  /** volume → the Event last sent for it (reason and Pod UID or message), so none repeats. */
  readonly #sent = new Map<string, string>();
  readonly #moving = new Map<string, Promise<void>>();
  /** volume → share managers in a row that ended without ever serving, and when the next may start. */
  readonly #crashes = new Map<string, { count: number; notBeforeMs: number }>();
  /** Pod UIDs that served (advertised themselves): a crash after serving is a failover, not a loop. */
  readonly #served = new Set<string>();
  /** Pod UIDs whose replacement was counted (a deletion is retried until the Pod is gone). */
  readonly #counted = new Set<string>();

  constructor(options: ShareReconcilerOptions) {
    this.#options = options;
  }

  /** Reconciles every share volume; one volume's failure is logged and does not stop the others. */
  async reconcileAll(volumes: readonly Volume[]): Promise<void> {
    const shared = volumes.filter(servesShare);
    if (shared.length === 0) return;
    const nodes = await this.#options.cluster.listNodes();
    await Promise.all(
      shared.map((volume) =>
        this.reconcile(volume, nodes).catch((err: unknown) =>
          this.#options.log.warn(
            { volume: volume.metadata.name, err: errorMessage(err) },
            'share manager reconcile failed; retried on the next pass',
          ),
        ),
      ),
    );
  }

  async reconcile(volume: Volume, nodes: readonly NodeRegistrationRecord[]): Promise<void> {
    const { shares } = this.#options;
    const id = volume.metadata.name;
    const objects = await shares.readShare(id);
    const nowMs = this.#options.now?.() ?? Date.now();
    const actions = decideShare({
      volumeId: id,
      deleting: volume.metadata.deletionTimestamp !== undefined,
      engineNodes: (volume.spec.engines ?? []).map((e) => e.node),
      ...(objects.pod ? { pod: objects.pod } : {}),
      ...(objects.heartbeat ? { heartbeat: objects.heartbeat } : {}),
      advertised: objects.advertised,
      serviceExists: objects.service !== undefined,
      nowMs,
      nodeAlive: (node) => nodes.some((n) => n.node === node && isAlive(n, nowMs)),
    });
    // Nodes whose data plane stopped renewing its registration: the scheduler may still see them
    // Ready (the node controller takes longer), but no engine can run there.
    const lostNodes = nodes.filter((n) => !isAlive(n, nowMs)).map((n) => n.node);
    // A Pod that took the heartbeat has served (it does so as it publishes its endpoint), even if
    // no pass saw it advertised (a controller that took over the lead, a short life).
    if (objects.pod !== undefined && objects.heartbeat?.holder === objects.pod.uid)
      this.#served.add(objects.pod.uid);
    for (const action of actions) await this.#carryOut(volume, action, objects.pod, nowMs, lostNodes);
    // Serving: the Pod runs on its engine's node and advertises itself.
    const pod = objects.pod;
    if (pod?.phase === 'Running' && objects.advertised.length > 0 && actions.length === 0) {
      this.#served.add(pod.uid);
      this.#crashes.delete(id);
      this.#once(volume, 'ShareManagerStarted', pod.uid, {
        type: 'Normal',
        message: `share manager ${pod.name} serves volume ${id} from node ${pod.nodeName} (Service address ${objects.service?.clusterIP ?? 'pending'})`,
      });
    }
  }

  async #carryOut(
    volume: Volume,
    action: ShareAction,
    pod: SharePodState | undefined,
    nowMs: number,
    lostNodes: readonly string[],
  ): Promise<void> {
    const podUid = pod?.uid;
    const { shares, log } = this.#options;
    const id = volume.metadata.name;
    const share = volume.spec.share;
    if (share === undefined) return;
    switch (action.kind) {
      case 'createService':
        await shares.createService(shareManagerService(id, this.#options.pod.namespace));
        return;
      case 'createPod': {
        const crashes = this.#crashes.get(id);
        // Like the kubelet's CrashLoopBackOff: a share manager that keeps failing before it
        // serves (a broken image, a volume that will not mount) is retried ever more slowly.
        if (crashes !== undefined && nowMs < crashes.notBeforeMs) return;
        await shares.createPod(
          shareManagerPod(id, share, {
            ...this.#options.pod,
            fsType: volume.spec.fsType ?? 'ext4',
            avoidNodes: lostNodes,
          }),
        );
        log.info({ volume: id }, 'share manager Pod created');
        return;
      }
      case 'deletePod':
        if (podUid === undefined) return;
        if (!action.force && !this.#served.has(podUid)) {
          const count = (this.#crashes.get(id)?.count ?? 0) + 1;
          const delayMs =
            count === 1 ? 0 : Math.min(CRASH_BACKOFF_MS * 2 ** (count - 2), MAX_CRASH_BACKOFF_MS);
          this.#crashes.set(id, { count, notBeforeMs: nowMs + delayMs });
          if (delayMs > 0)
            log.warn(
              { volume: id, failures: count, delayMs },
              'share manager keeps failing before it serves; backing off',
            );
        }
        await shares.deletePod(id, podUid, action.force);
        if (action.cause !== undefined && !this.#counted.has(podUid)) {
          this.#counted.add(podUid);
          this.#options.metrics?.failovers.inc({
            // A Pod that ended before it ever served is a crash loop, not a failover.
            cause: action.cause === 'ended' && !this.#served.has(podUid) ? 'failed_start' : action.cause,
          });
        }
        this.#served.delete(podUid);
        log.warn({ volume: id, reason: action.reason, force: action.force }, 'share manager Pod deleted');
        return;
      case 'clearEndpoints':
        await shares.clearEndpoints(id);
        return;
      case 'moveEngine':
        this.#moveEngine(id, action.to);
        return;
      case 'releaseEngine':
      case 'deleteAll':
        // Deletion is DeleteVolume's (it waits for the engine to stop); nothing to start here.
        return;
      case 'event':
        this.#once(volume, action.reason, `${podUid ?? ''}\0${action.message}`, action);
        return;
    }
  }

  #moveEngine(id: string, to: string): void {
    if (this.#moving.has(id)) return;
    const { cluster, log } = this.#options;
    const move = moveShareEngine(cluster, id, to, log, this.#options.engineWaitMs)
      .then(() => log.info({ volume: id, node: to }, 'share engine moved'))
      .catch((err: unknown) =>
        log.warn({ volume: id, node: to, err: errorMessage(err) }, 'moving the share engine failed; retried'),
      )
      .finally(() => this.#moving.delete(id));
    this.#moving.set(id, move);
  }

  #once(
    volume: Volume,
    reason: string,
    key: string,
    event: { type: 'Normal' | 'Warning'; message: string },
  ): void {
    const id = volume.metadata.name;
    const mark = `${reason}\0${key}`;
    if (this.#sent.get(id) === mark) return;
    this.#sent.set(id, mark);
    this.#options.events.record(eventSubject(volume), { type: event.type, reason, message: event.message });
  }

  /** Waits for engine moves in flight (shutdown, tests). */
  async settled(): Promise<void> {
    await Promise.all(this.#moving.values());
  }
}
