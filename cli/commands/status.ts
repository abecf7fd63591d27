import { Command } from '@commander-js/extra-typings';
import type { Volume } from '../../lib/api/volume.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { kubeconfigOption, outputOption } from '../options.js';

const COLUMNS = ['NAME', 'STATE', 'ROBUSTNESS', 'NODE', 'MIGRATION TARGET', 'HEALTHY', 'SIZE'] as const;

export function statusCommand() {
  return new Command('status')
    .description('show every Tandem volume: state, robustness, node, migration, healthy replicas')
    .addOption(kubeconfigOption())
    .addOption(outputOption())
    .action(async (options) => {
      const client = new VolumeClient(loadKubeConfig(options.kubeconfig));
      const volumes = (await client.list()).items;
      process.stdout.write(
        options.output === 'json' ? `${JSON.stringify(volumes, null, 2)}\n` : formatVolumes(volumes),
      );
    });
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
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return `${[line(COLUMNS), ...rows.map(line)].join('\n')}\n`;
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
