/**
 * The controller's share-manager series: replacements it decided, by cause. Each share manager
 * counts its own up, grace periods, clients and NFS operations (driver/share-manager/metrics.ts);
 * a failover is decided here, so it is counted here, once per replaced Pod.
 */
import { Counter, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../../lib/metrics.js';
import type { FailoverCause } from './share-manager-decide.js';

/** Why a share manager was replaced; `failed_start` when it ended before it ever served (a crash loop, not a failover). */
export type FailoverLabel = FailoverCause | 'failed_start';

export const FAILOVER_LABELS: readonly FailoverLabel[] = [
  'ended',
  'node_lost',
  'heartbeat_expired',
  'failed_start',
];

export class ShareControllerMetrics {
  readonly failovers: Counter<'cause'>;

  constructor(registry: Registry) {
    this.failovers = new Counter({
      name: `${METRIC_PREFIX}share_manager_failovers_total`,
      help: 'Share-manager Pods the leading controller replaced, by cause (failed_start: it ended before it ever served)',
      labelNames: ['cause'],
      registers: [registry],
    });
    // Every cause is a series from the start, so rate() and alerts see the first one.
    for (const cause of FAILOVER_LABELS) this.failovers.inc({ cause }, 0);
  }
}
