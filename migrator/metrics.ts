/**
 * The migrator's series (private registry, `tandem_` prefix). Results are label values, not
 * numeric codes: `confirmed`, `rolled_back`, `detached`; reasons are the record's CamelCase reason.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { MigrationDecision } from '../lib/api/volume.js';
import { createRegistry, METRIC_PREFIX } from '../lib/metrics.js';

export type MigrationResult = 'confirmed' | 'rolled_back' | 'detached';

export function resultOf(decision: MigrationDecision): MigrationResult {
  if (decision === 'Confirm') return 'confirmed';
  if (decision === 'Rollback') return 'rolled_back';
  return 'detached';
}

/** Live migrations of a VM disk take seconds to minutes; decisions take milliseconds to seconds. */
const DURATION_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800];
const DECISION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30];

export class MigratorMetrics {
  readonly registry: Registry;
  readonly migrations: Counter<'result' | 'reason'>;
  readonly duration: Histogram<'result'>;
  readonly dualEngine: Histogram<'result'>;
  readonly decisionLatency: Histogram<'result'>;
  readonly active: Gauge;
  readonly leader: Gauge;
  readonly reconcileErrors: Counter;
  /** What `tandem_migrations_active` reports; the leading reconciler points it at its cache. */
  activeMigrations: () => number = () => 0;

  constructor(registry: Registry = createRegistry('migrator')) {
    this.registry = registry;
    const p = `${METRIC_PREFIX}migration_`;
    const r = [registry];
    this.migrations = new Counter({
      name: `${METRIC_PREFIX}migrations_total`,
      help: 'Live migrations that ended, by result (confirmed, rolled_back, detached) and reason',
      labelNames: ['result', 'reason'],
      registers: r,
    });
    this.duration = new Histogram({
      name: `${p}duration_seconds`,
      help: 'Migration start (second engine requested) to decision',
      labelNames: ['result'],
      buckets: DURATION_BUCKETS,
      registers: r,
    });
    this.dualEngine = new Histogram({
      name: `${p}dual_engine_seconds`,
      help: 'Time two engines served the volume: target engine ready to the loser fenced',
      labelNames: ['result'],
      buckets: DURATION_BUCKETS,
      registers: r,
    });
    this.decisionLatency = new Histogram({
      name: `${p}decision_latency_seconds`,
      help: 'Deciding evidence observed (pod, VMIM or VMI change) to one engine left and the loser fenced',
      labelNames: ['result'],
      buckets: DECISION_BUCKETS,
      registers: r,
    });
    const metrics = this;
    this.active = new Gauge({
      name: `${METRIC_PREFIX}migrations_active`,
      help: 'Live migrations in progress (a migration record on the Volume)',
      registers: r,
      // Counted when scraped, from the leader's cache: not once per reconcile of every volume.
      collect() {
        this.set(metrics.activeMigrations());
      },
    });
    this.leader = new Gauge({
      name: `${METRIC_PREFIX}migrator_leader`,
      help: '1 while this migrator holds the leader Lease',
      registers: r,
    });
    this.reconcileErrors = new Counter({
      name: `${METRIC_PREFIX}migrator_reconcile_errors_total`,
      help: 'Reconciles of a volume that failed and were retried',
      registers: r,
    });
  }
}
