import { newVolume } from '../../lib/api/volume.js';
import { formatBytes, formatVolumes } from './status.js';

describe('status output', () => {
  it('prints one aligned row per volume with healthy/wanted replicas and the migration target', () => {
    const migrating = {
      ...newVolume('pvc-1', {
        sizeBytes: 10 * 2 ** 30,
        numberOfReplicas: 3,
        accessMode: 'ReadWriteMany',
        volumeMode: 'Block',
        migratable: true,
      }),
      status: {
        state: 'Migrating' as const,
        robustness: 'Degraded' as const,
        node: 'node-1',
        healthyReplicas: 2,
        migration: { source: 'node-1', target: 'node-2' },
      },
    };
    const fresh = newVolume('pvc-22', {
      sizeBytes: 5 * 2 ** 20,
      numberOfReplicas: 1,
      accessMode: 'ReadWriteOnce',
      volumeMode: 'Filesystem',
    });
    const lines = formatVolumes([migrating, fresh]).trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+ROBUSTNESS\s+NODE\s+MIGRATION TARGET\s+HEALTHY\s+SIZE$/);
    expect(lines[1]?.split(/\s{2,}/)).toEqual([
      'pvc-1',
      'Migrating',
      'Degraded',
      'node-1',
      'node-2',
      '2/3',
      '10GiB',
    ]);
    expect(lines[2]?.split(/\s{2,}/)).toEqual(['pvc-22', '-', '-', '-', '-', '0/1', '5MiB']);
    expect(lines[1]?.indexOf('Migrating')).toBe(lines[0]?.indexOf('STATE'));
  });

  it('says so when there is nothing', () => {
    expect(formatVolumes([])).toBe('No Tandem volumes.\n');
  });

  it('formats sizes exactly, never rounding', () => {
    expect(formatBytes(4096)).toBe('4KiB');
    expect(formatBytes(1_000_000)).toBe('1000000B');
    expect(formatBytes(3 * 2 ** 40)).toBe('3TiB');
  });
});
