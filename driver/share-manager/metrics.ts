/**
 * The share manager's series (private registry, `tandem_` prefix): whether its export serves,
 * the grace periods it entered (every Ganesha start begins in grace), and the NFS clients
 * connected right now, counted at scrape time from the kernel's TCP table (established
 * connections to the export's address and port) rather than guessed from Ganesha's log, and the
 * NFS requests Ganesha served, from its own statistics (ganesha-dbus.ts).
 * Failovers are counted by the controller, which decides them (driver/controller/share-metrics.ts).
 */
import { readFile } from 'node:fs/promises';
import { Counter, Gauge, type Registry } from 'prom-client';
import { createRegistry, METRIC_PREFIX } from '../../lib/metrics.js';

const TCP_ESTABLISHED = '01';

/**
 * How /proc/net/tcp writes an IPv4 address (8 hex digits, host little-endian order) and how
 * /proc/net/tcp6 writes the same address v4-mapped (::ffff:a.b.c.d, four 32-bit words each in
 * host order) — Ganesha listens on an IPv6 socket, so its IPv4 clients show up in tcp6.
 */
function procAddresses(address: string, port: number): string[] {
  const v4 = address
    .split('.')
    .map(Number)
    .reverse()
    .map((o) => o.toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase();
  const hexPort = port.toString(16).padStart(4, '0').toUpperCase();
  return [`${v4}:${hexPort}`, `0000000000000000FFFF0000${v4}:${hexPort}`];
}

/** Established TCP connections whose local end is address:port, from /proc/net/tcp and tcp6 text. */
export function countEstablished(procNetTcp: string, address: string, port: number): number {
  const locals = new Set(procAddresses(address, port));
  return procNetTcp
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => locals.has(fields[1] ?? '') && fields[3] === TCP_ESTABLISHED).length;
}

export class ShareManagerMetrics {
  readonly registry: Registry;
  readonly up: Gauge<'volume'>;
  readonly gracePeriods: Counter<'volume'>;
  readonly clients: Gauge<'volume'>;

  readonly nfsOperations: Counter<'volume' | 'protocol'>;

  constructor(
    volumeId: string,
    served: () => { address: string; port: number } | undefined,
    /** Ganesha's own request counts by protocol (cumulative), when its statistics are reachable. */
    operations: () => Promise<Record<string, number> | undefined> = async () => undefined,
    registry = createRegistry('share-manager'),
  ) {
    this.registry = registry;
    const p = `${METRIC_PREFIX}share_manager_`;
    this.up = new Gauge({
      name: `${p}up`,
      help: 'Whether this share manager serves its volume over NFS (1) or not (0)',
      labelNames: ['volume'],
      registers: [registry],
    });
    this.gracePeriods = new Counter({
      name: `${p}grace_periods_total`,
      help: 'NFS grace periods this share manager entered (each Ganesha start begins in grace)',
      labelNames: ['volume'],
      registers: [registry],
    });
    this.clients = new Gauge({
      name: `${p}clients`,
      help: 'NFS client connections established to this share manager now',
      labelNames: ['volume'],
      registers: [registry],
      async collect() {
        const where = served();
        if (where === undefined || where.address.includes(':')) return;
        const tables = await Promise.all(
          ['/proc/net/tcp', '/proc/net/tcp6'].map((file) => readFile(file, 'utf8').catch(() => '')),
        );
        const table = tables.join('\n');
        this.set({ volume: volumeId }, countEstablished(table, where.address, where.port));
      },
    });
    // Ganesha counts from its start; the counter follows by the difference at each scrape.
    const seen = new Map<string, number>();
    this.nfsOperations = new Counter({
      name: `${p}nfs_operations_total`,
      help: "NFS requests (COMPOUNDs) NFS-Ganesha served, by protocol version, from Ganesha's own statistics",
      labelNames: ['volume', 'protocol'],
      registers: [registry],
      async collect() {
        const counts = await operations().catch(() => undefined);
        for (const [protocol, total] of Object.entries(counts ?? {})) {
          if (!/^NFSv4[12]$/.test(protocol)) continue; // the only protocols the export serves
          const before = seen.get(protocol) ?? 0;
          if (total > before) this.inc({ volume: volumeId, protocol }, total - before);
          else this.inc({ volume: volumeId, protocol }, 0);
          seen.set(protocol, Math.max(total, before));
        }
      },
    });
    this.up.set({ volume: volumeId }, 0);
    this.gracePeriods.inc({ volume: volumeId }, 0);
  }
}
