import { Command } from '@commander-js/extra-typings';
import type { MigrationPhase, Volume } from '../../lib/api/volume.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { kubeconfigOption, outputOption } from '../options.js';

const COLUMNS = ['NAME', 'STATE', 'ROBUSTNESS', 'NODE', 'MIGRATION TARGET', 'HEALTHY', 'SIZE'] as const;
const MIGRATION_COLUMNS = ['VOLUME', 'SOURCE -> TARGET', 'PHASE', 'AGE', 'RESULT'] as const;

/** One running (`status.migration`) or last ended (`status.lastMigration`) migration of a volume. */
export interface MigrationRow {
  volume: string;
  source: string;
  target: string;
  phase: MigrationPhase | 'Unknown';
  running: boolean;
  /** startedAt for a running migration, endedAt for an ended one. */
  since?: string;
  /** Whole seconds since `since`; absent when that time is missing or unreadable. */
  ageSeconds?: number;
  decision?: string;
  reason?: string;
}

export function statusCommand() {
  return new Command('status')
    .description('show every Tandem volume: state, robustness, node, migration, healthy replicas')
    .addOption(kubeconfigOption())
    .addOption(outputOption())
    .action(async (options) => {
      const client = new VolumeClient(loadKubeConfig(options.kubeconfig));
      const volumes = (await client.list()).items;
      const now = new Date();
      process.stdout.write(
        options.output === 'json'
          ? `${JSON.stringify({ volumes, migrations: migrationRows(volumes, now) }, null, 2)}\n`
          : formatStatus(volumes, now),
      );
    });
}

/** The volume table, then, when any volume has a running or ended migration, the migration table. */
export function formatStatus(volumes: readonly Volume[], now: Date = new Date()): string {
  const migrations = formatMigrations(migrationRows(volumes, now));
  return migrations === '' ? formatVolumes(volumes) : `${formatVolumes(volumes)}\nMIGRATIONS\n${migrations}`;
}

/** The running migration of each volume that has one, else its last ended one. */
export function migrationRows(volumes: readonly Volume[], now: Date): MigrationRow[] {
  const rows: MigrationRow[] = [];
  for (const v of volumes) {
    const running = v.status?.migration;
    const record = running ?? v.status?.lastMigration;
    if (!record) continue;
    const since = running ? record.startedAt : (record.endedAt ?? record.startedAt);
    const sinceMs = since === undefined ? Number.NaN : Date.parse(since);
    const row: MigrationRow = {
      volume: v.metadata.name,
      source: record.source,
      target: record.target,
      phase: record.phase ?? 'Unknown',
      running: running !== undefined,
    };
    if (since !== undefined) row.since = since;
    if (!Number.isNaN(sinceMs)) row.ageSeconds = Math.max(0, Math.floor((now.getTime() - sinceMs) / 1000));
    if (record.decision !== undefined) row.decision = record.decision;
    if (record.reason !== undefined) row.reason = record.reason;
    rows.push(row);
  }
  return rows;
}

/** The migration table, or '' when there are no rows. */
export function formatMigrations(rows: readonly MigrationRow[]): string {
  if (rows.length === 0) return '';
  return table(
    MIGRATION_COLUMNS,
    rows.map((r) => [
      r.volume,
      `${r.source} -> ${r.target}`,
      r.phase,
      r.ageSeconds === undefined ? '-' : formatAge(r.ageSeconds),
      r.running ? '-' : formatResult(r),
    ]),
  );
}

function formatResult(row: MigrationRow): string {
  if (row.decision === undefined) return row.reason ?? '-';
  return row.reason === undefined ? row.decision : `${row.decision} (${row.reason})`;
}

/** kubectl-style age: 45s, 3m, 5h, 2d. */
export function formatAge(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

export function formatVolumes(volumes: readonly Volume[]): string {
  if (volumes.length === 0) return 'No Tandem volumes.\n';
  const rows = volumes.map((v) => [
    v.metadata.name,
    v.status?.state ?? '-',
    v.status?.robustness ?? '-',
    v.status?.node ?? '-',
    v.status?.migration?.target ?? '-',
    `${v.status?.healthyReplicas ?? 0}/${v.spec.numberOfReplicas}`,
    formatBytes(v.spec.sizeBytes),
  ]);
  return table(COLUMNS, rows);
}

function table(columns: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return `${[line(columns), ...rows.map(line)].join('\n')}\n`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1 && value % 1024 === 0) {
    value /= 1024;
    unit++;
  }
  return `${value}${units[unit]}`;
}
