import { newVolume } from '../../lib/api/volume.js';
import { formatAge, formatBytes, formatStatus, formatVolumes, migrationRows } from './status.js';

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

  describe('migrations', () => {
    const now = new Date('2025-01-01T12:00:00Z');
    const base = () =>
      newVolume('pvc-1', {
        sizeBytes: 2 ** 30,
        numberOfReplicas: 3,
        accessMode: 'ReadWriteMany',
        volumeMode: 'Block',
        migratable: true,
      });
    const running = {
      ...base(),
      status: {
        state: 'Migrating' as const,
        node: 'node-1',
        migration: {
          source: 'node-1',
          target: 'node-2',
          vmName: 'vm-a',
          phase: 'TargetReady' as const,
          startedAt: '2025-01-01T11:59:48Z',
        },
        lastMigration: {
          source: 'node-2',
          target: 'node-1',
          phase: 'Confirmed' as const,
          decision: 'Confirm' as const,
          endedAt: '2024-12-31T00:00:00Z',
        },
      },
    };
    const ended = {
      ...base(),
      metadata: { name: 'pvc-22' },
      status: {
        state: 'Attached' as const,
        lastMigration: {
          source: 'node-3',
          target: 'node-4',
          phase: 'Confirmed' as const,
          decision: 'Confirm' as const,
          reason: 'MigrationSucceeded',
          startedAt: '2025-01-01T11:50:00Z',
          endedAt: '2025-01-01T11:57:00Z',
        },
      },
    };
    const quiet = { ...base(), metadata: { name: 'pvc-333' } };

    it('adds a MIGRATIONS table after the volume table: running first-hand, ended with its result', () => {
      const out = formatStatus([running, ended, quiet], now);
      const [volumes, migrations] = out.split('\nMIGRATIONS\n');
      expect(volumes).toBe(formatVolumes([running, ended, quiet]));
      const lines = (migrations ?? '').trimEnd().split('\n');
      expect(lines).toHaveLength(3);
      expect(lines[0]).toMatch(/^VOLUME\s+SOURCE -> TARGET\s+PHASE\s+AGE\s+RESULT$/);
      expect(lines[1]?.split(/\s{2,}/)).toEqual(['pvc-1', 'node-1 -> node-2', 'TargetReady', '12s', '-']);
      expect(lines[2]?.split(/\s{2,}/)).toEqual([
        'pvc-22',
        'node-3 -> node-4',
        'Confirmed',
        '3m',
        'Confirm (MigrationSucceeded)',
      ]);
    });

    it('leaves the table out when no volume has migrated', () => {
      expect(formatStatus([quiet], now)).toBe(formatVolumes([quiet]));
      expect(formatStatus([], now)).toBe('No Tandem volumes.\n');
    });

    it('gives the same data as rows for JSON output', () => {
      expect(migrationRows([running, ended, quiet], now)).toEqual([
        {
          volume: 'pvc-1',
          source: 'node-1',
          target: 'node-2',
          phase: 'TargetReady',
          running: true,
          since: '2025-01-01T11:59:48Z',
          ageSeconds: 12,
        },
        {
          volume: 'pvc-22',
          source: 'node-3',
          target: 'node-4',
          phase: 'Confirmed',
          running: false,
          since: '2025-01-01T11:57:00Z',
          ageSeconds: 180,
          decision: 'Confirm',
          reason: 'MigrationSucceeded',
        },
      ]);
    });

    it('prints "-" for an unknown age', () => {
      const noTime = { ...running, status: { migration: { source: 'a', target: 'b' } } };
      const line = formatStatus([noTime], now).trimEnd().split('\n').at(-1);
      expect(line?.split(/\s{2,}/)).toEqual(['pvc-1', 'a -> b', 'Unknown', '-', '-']);
    });

    it('formats ages like kubectl', () => {
      expect(formatAge(0)).toBe('0s');
      expect(formatAge(59)).toBe('59s');
      expect(formatAge(60)).toBe('1m');
      expect(formatAge(3599)).toBe('59m');
      expect(formatAge(7200)).toBe('2h');
      expect(formatAge(3 * 86400)).toBe('3d');
    });
  });
});
