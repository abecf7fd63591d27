import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createRegistry, METRIC_PREFIX } from '../../lib/metrics.js';

/** Latency buckets from 50 µs (a page-cache read) to 10 s (a stuck disk). */
export const IO_LATENCY_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 10,
];

/** The replica server's series; one instance per server, in its own registry. */
export class ReplicaServerMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'volume' | 'op' | 'status'>;
  readonly bytes: Counter<'volume' | 'op'>;
  readonly latency: Histogram<'op'>;
  readonly sessions: Gauge<'volume'>;
  readonly refusedHellos: Counter<'reason'>;
  readonly fatalFrames: Counter<'reason'>;

  constructor(registry: Registry = createRegistry('replica-server')) {
    this.registry = registry;
    const p = `${METRIC_PREFIX}replica_`;
    this.requests = new Counter({
      name: `${p}requests_total`,
      help: 'Replica protocol requests answered, by volume, operation and status',
      labelNames: ['volume', 'op', 'status'],
      registers: [registry],
    });
    this.bytes = new Counter({
      name: `${p}bytes_total`,
      help: 'Bytes read or written by replica requests',
      labelNames: ['volume', 'op'],
      registers: [registry],
    });
    this.latency = new Histogram({
      name: `${p}request_duration_seconds`,
      help: 'Time from a request arriving to its reply being queued',
      labelNames: ['op'],
      buckets: IO_LATENCY_BUCKETS,
      registers: [registry],
    });
    this.sessions = new Gauge({
      name: `${p}sessions`,
      help: 'Authenticated engine sessions per volume',
      labelNames: ['volume'],
      registers: [registry],
    });
    this.refusedHellos = new Counter({
      name: `${p}refused_hellos_total`,
      help: 'HELLOs refused: bad credential, unknown volume, stale epoch',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.fatalFrames = new Counter({
      name: `${p}malformed_frames_total`,
      help: 'Connections ended because of a malformed frame, by reason',
      labelNames: ['reason'],
      registers: [registry],
    });
  }
}
