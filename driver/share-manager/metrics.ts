/**
 * The share manager's series (private registry, `tandem_` prefix): whether its export serves,
 * the grace periods it entered (every Ganesha start begins in grace), and the NFS clients
 * connected right now, counted at scrape time from the kernel's TCP table (established
 * connections to the export's address and port) rather than guessed from Ganesha's log.
 * Failovers are counted by the controller, which decides them.
 */
import { readFile } from 'node:fs/promises';
import { Counter, Gauge, type Registry } from 'prom-client';
import { createRegistry, METRIC_PREFIX } from '../../lib/metrics.js';

const TCP_ESTABLISHED = '01';

/** `/proc/net/tcp` encodes an IPv4 address as 8 hex digits in host (little-endian) order. */
function procAddress(address: string, port: number): string {
  const octets = address.split('.').map(Number);
  const hex = octets
    .reverse()
    .map((o) => o.toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase();
  return `${hex}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
}

/** Established TCP connections whose local end is address:port, from /proc/net/tcp's text. */
export function countEstablished(procNetTcp: string, address: string, port: number): number {
  const local = procAddress(address, port);
  return procNetTcp
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[1] === local && fields[3] === TCP_ESTABLISHED).length;
}

export class ShareManagerMetrics {
  readonly registry: Registry;
  readonly up: Gauge<'volume'>;
  readonly gracePeriods: Counter<'volume'>;
  readonly clients: Gauge<'volume'>;

  constructor(
    volumeId: string,
    served: () => { address: string; port: number } | undefined,
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
        const table = await readFile('/proc/net/tcp', 'utf8').catch(() => '');
        this.set({ volume: volumeId }, countEstablished(table, where.address, where.port));
      },
    });
    this.up.set({ volume: volumeId }, 0);
    this.gracePeriods.inc({ volume: volumeId }, 0);
  }
}
