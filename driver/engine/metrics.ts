import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ReplicaMode } from '../../lib/api/volume.js';
import { createRegistry, METRIC_PREFIX } from '../../lib/metrics.js';
import type { NbdOp } from '../nbd/device.js';
import { IO_LATENCY_BUCKETS } from '../replica/metrics.js';
import type { Membership } from './membership.js';

const REPLICA_MODES: readonly ReplicaMode[] = ['ReadWrite', 'WriteOnly', 'Failed'];

/** An engine's series (one registry per process, label `volume` per engine). */
export class EngineMetrics {
  readonly registry: Registry;
  readonly ops: Counter<'volume' | 'op' | 'result'>;
  readonly bytes: Counter<'volume' | 'op'>;
  readonly latency: Histogram<'volume' | 'op'>;
  readonly replicaState: Gauge<'volume' | 'replica' | 'state'>;
  readonly epoch: Gauge<'volume'>;
  readonly engines: Gauge<'volume'>;
  readonly rebuildProgress: Gauge<'volume' | 'replica'>;
  readonly rebuilds: Counter<'volume' | 'outcome'>;
  readonly rebuildBytes: Counter<'volume'>;
  readonly scrubDivergentBlocks: Gauge<'volume'>;
  readonly scrubs: Counter<'volume' | 'result'>;

  constructor(registry: Registry = createRegistry('engine')) {
    this.registry = registry;
    const p = `${METRIC_PREFIX}engine_`;
    const r = [registry];
    this.ops = new Counter({
      name: `${p}operations_total`,
      help: 'NBD operations by result',
      labelNames: ['volume', 'op', 'result'],
      registers: r,
    });
    this.bytes = new Counter({
      name: `${p}bytes_total`,
      help: 'Bytes read and written through NBD',
      labelNames: ['volume', 'op'],
      registers: r,
    });
    this.latency = new Histogram({
      name: `${p}operation_duration_seconds`,
      help: 'NBD operation latency, request decoded to reply queued',
      labelNames: ['volume', 'op'],
      buckets: IO_LATENCY_BUCKETS,
      registers: r,
    });
    this.replicaState = new Gauge({
      name: `${p}replica_state`,
      help: 'One series per replica and state; 1 for the state the replica is in',
      labelNames: ['volume', 'replica', 'state'],
      registers: r,
    });
    this.epoch = new Gauge({
      name: `${p}epoch`,
      help: 'Current fencing epoch',
      labelNames: ['volume'],
      registers: r,
    });
    this.engines = new Gauge({
      name: `${p}attached_engines`,
      help: 'Engines attached to the volume (2 during a migration)',
      labelNames: ['volume'],
      registers: r,
    });
    this.rebuildProgress = new Gauge({
      name: `${p}rebuild_progress_ratio`,
      help: 'Fraction of allocated data copied to a rebuilding replica',
      labelNames: ['volume', 'replica'],
      registers: r,
    });
    this.rebuilds = new Counter({
      name: `${p}rebuilds_total`,
      help: 'Rebuilds by outcome',
      labelNames: ['volume', 'outcome'],
      registers: r,
    });
    this.rebuildBytes = new Counter({
      name: `${p}rebuild_bytes_total`,
      help: 'Bytes copied by rebuilds',
      labelNames: ['volume'],
      registers: r,
    });
    this.scrubDivergentBlocks = new Gauge({
      name: `${p}scrub_divergent_blocks`,
      help: 'Blocks whose hashes differed between replicas in the last scrub',
      labelNames: ['volume'],
      registers: r,
    });
    this.scrubs = new Counter({
      name: `${p}scrubs_total`,
      help: 'Scrubs by result',
      labelNames: ['volume', 'result'],
      registers: r,
    });
  }

  observeRequest(volume: string, op: NbdOp, bytes: number, seconds: number, ok: boolean): void {
    this.ops.inc({ volume, op, result: ok ? 'ok' : 'error' });
    this.latency.observe({ volume, op }, seconds);
    if (ok && bytes > 0) this.bytes.inc({ volume, op }, bytes);
  }

  observeMembership(volume: string, record: Membership): void {
    this.epoch.set({ volume }, record.epoch);
    this.engines.set({ volume }, record.engines.length);
    for (const replica of record.replicas) {
      for (const state of REPLICA_MODES) {
        this.replicaState.set({ volume, replica: replica.node, state }, replica.mode === state ? 1 : 0);
      }
    }
  }
}
