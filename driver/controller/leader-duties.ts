/**
 * What only the leading controller does (every replica serves CSI calls, which are idempotent
 * and guarded by optimistic concurrency; the sidecars elect their own leaders): watch the Volumes,
 * turn what a user must see into Events, and keep every RWX Filesystem volume's share manager.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Volume } from '../../lib/api/volume.js';
import { errorMessage } from '../../lib/errors.js';
import { keepWatching } from '../../lib/kube/informer.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import type { Logger } from '../../lib/log.js';
import type { ControllerCluster } from './cluster.js';
import { type ShareReconciler, servesShare } from './share-reconciler.js';
import { type EventSink, eventSubject, LostNodeReporter, replicaTransitions } from './volume-events.js';

export interface LeaderDutiesOptions {
  kc: KubeConfig;
  cluster: ControllerCluster;
  events: EventSink;
  log: Logger;
  nodeCheckIntervalMs?: number;
  /** Share managers of RWX Filesystem volumes: reconciled on every Volume change and every resyncMs. */
  shares?: { reconciler: ShareReconciler; resyncMs: number };
}

/** Runs until `signal` aborts (leadership lost or shutdown). */
export async function runLeaderDuties(options: LeaderDutiesOptions, signal: AbortSignal): Promise<void> {
  const { log, events } = options;
  const informer = new VolumeClient(options.kc).informer();
  const last = new Map<string, Volume>();
  const onChange = (volume: Volume) => {
    for (const event of replicaTransitions(last.get(volume.metadata.name), volume))
      events.record(eventSubject(volume), event);
    last.set(volume.metadata.name, volume);
  };
  // The first list only records where things stand: transitions are reported from then on.
  const shares = options.shares;
  // One pass at a time: a pass reads every object it decides on, so passes never interleave.
  let sharePass: Promise<void> = Promise.resolve();
  const reconcileShares = () => {
    if (shares === undefined) return;
    sharePass = sharePass
      .then(() => shares.reconciler.reconcileAll(informer.list()))
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'share manager pass failed'));
  };
  informer.on('add', (volume) => {
    last.set(volume.metadata.name, volume);
    if (servesShare(volume)) reconcileShares();
  });
  informer.on('update', (volume) => {
    onChange(volume);
    if (servesShare(volume)) reconcileShares();
  });
  informer.on('delete', (volume) => last.delete(volume.metadata.name));
  const watching = await keepWatching(informer, { name: 'volumes', logger: log });
  const reporter = new LostNodeReporter(options.cluster, events);
  const timer = setInterval(() => {
    reporter
      .check(informer.list())
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'lost-node check failed'));
  }, options.nodeCheckIntervalMs ?? 10_000);
  const shareTimer = shares && setInterval(reconcileShares, shares.resyncMs);
  log.info('leading: reporting volume events, reconciling share managers');
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  clearInterval(timer);
  if (shareTimer) clearInterval(shareTimer);
  await watching.stop();
  await sharePass;
  await shares?.reconciler.settled();
}
