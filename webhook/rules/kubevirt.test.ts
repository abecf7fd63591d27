import type { Operation, Verdict } from '../admission.js';
import {
  claim,
  fakeClusterView,
  NAMESPACE,
  persistentVolume,
  request,
  storageClass,
} from './fake-cluster-view.js';
import { validateVirtualMachine } from './kubevirt.js';

type Kind = 'VirtualMachine' | 'VirtualMachineInstance';
const KINDS: Kind[] = ['VirtualMachine', 'VirtualMachineInstance'];

const view = fakeClusterView({
  storageClasses: [
    storageClass('migratable', { migratable: 'true' }),
    storageClass('plain'),
    storageClass('other', { provisioner: 'ebs.csi.aws.com' }),
  ],
  persistentVolumes: [persistentVolume('pv-root', { migratable: 'false' })],
  claims: [
    claim('rwx-block', {
      storageClassName: 'migratable',
      accessModes: ['ReadWriteMany'],
      volumeMode: 'Block',
    }),
    claim('rwx-fs', { storageClassName: 'plain', accessModes: ['ReadWriteMany'] }),
    claim('rwo-fs', { storageClassName: 'plain', accessModes: ['ReadWriteOnce'] }),
    claim('rwop-block', {
      storageClassName: 'plain',
      accessModes: ['ReadWriteOncePod'],
      volumeMode: 'Block',
    }),
    claim('rwx-block-plain', {
      storageClassName: 'plain',
      accessModes: ['ReadWriteMany'],
      volumeMode: 'Block',
    }),
    claim('no-modes', { storageClassName: 'migratable' }),
    claim('foreign-rwo', { storageClassName: 'other', accessModes: ['ReadWriteOnce'] }),
    claim('rootdisk', { volumeName: 'pv-root', accessModes: ['ReadWriteOnce'], volumeMode: 'Block' }),
  ],
});

const pvc = (claimName: string) => ({ name: `v-${claimName}`, persistentVolumeClaim: { claimName } });
const dataVolume = (name: string) => ({ name: `v-${name}`, dataVolume: { name } });

/** A VM or VMI whose VMI spec (spec.template.spec or spec) is `vmiSpec`, checked or not. */
function withVmiSpec(kind: Kind, vmiSpec: unknown): Record<string, unknown> {
  const metadata = { name: 'vm1', namespace: NAMESPACE };
  const spec = kind === 'VirtualMachine' ? { runStrategy: 'Always', template: { spec: vmiSpec } } : vmiSpec;
  return { apiVersion: 'kubevirt.io/v1', kind, metadata, spec };
}

function vm(kind: Kind, evictionStrategy: string | undefined, volumes: unknown[]): Record<string, unknown> {
  return withVmiSpec(kind, {
    domain: { devices: {} },
    ...(evictionStrategy ? { evictionStrategy } : {}),
    volumes,
  });
}

function check(
  kind: Kind,
  object: unknown,
  options: { operation?: Operation; oldObject?: unknown; namespace?: string | null } = {},
) {
  return validateVirtualMachine(request(kind, object, { group: 'kubevirt.io', ...options }), view);
}

function expectDenied(verdict: Verdict, code: 403 | 422, ...parts: string[]) {
  expect(verdict).toMatchObject({ allowed: false, code });
  if (verdict.allowed) return;
  for (const part of parts) expect(verdict.message).toContain(part);
}

describe.each(KINDS)('validateVirtualMachine for a %s', (kind) => {
  const path = kind === 'VirtualMachine' ? 'spec.template.spec' : 'spec';

  it.each(['DELETE', 'CONNECT'] as const)('allows %s without reading the object', async (operation) => {
    expect(await check(kind, 'garbage', { operation })).toEqual({ allowed: true });
  });

  it.each([
    ['a string', 'vm', `not a ${kind}`],
    ['no metadata', { spec: {} }, 'metadata must be an object'],
    ['no spec', { metadata: {} }, 'spec must be an object'],
    ['a VMI spec that is not an object', withVmiSpec(kind, 3), `${path} must be an object`],
    ['a non-string evictionStrategy', withVmiSpec(kind, { evictionStrategy: 1 }), `${path}.evictionStrategy`],
    ['volumes not a list', withVmiSpec(kind, { volumes: 'x' }), `${path}.volumes must be a list`],
    [
      'a volume not an object',
      withVmiSpec(kind, { volumes: [null] }),
      `${path}.volumes[0] must be an object`,
    ],
    [
      'a claim volume without a name',
      withVmiSpec(kind, { volumes: [{ name: 'a', persistentVolumeClaim: { claimName: '' } }] }),
      `${path}.volumes[0].persistentVolumeClaim.claimName`,
    ],
    [
      'a DataVolume volume without a name',
      withVmiSpec(kind, { volumes: [pvc('rwx-block'), { name: 'b', dataVolume: {} }] }),
      `${path}.volumes[1].dataVolume.name`,
    ],
  ])('refuses an object with %s as invalid (422)', async (_, object, message) => {
    expectDenied(await check(kind, object), 422, `Tandem cannot check this ${kind}`, message);
  });

  it.each([
    ['no strategy', undefined],
    ['strategy None', 'None'],
    ['strategy External', 'External'],
    ['an unknown strategy (KubeVirt refuses it)', 'Sometimes'],
  ])('allows any claims with %s, without warnings', async (_, strategy) => {
    const object = vm(kind, strategy, [pvc('rwo-fs'), pvc('missing'), pvc('rwx-block-plain')]);
    expect(await check(kind, object)).toEqual({ allowed: true });
  });

  describe('with evictionStrategy LiveMigrate', () => {
    it.each([
      ['no volumes', []],
      ['a migratable RWX Block claim', [pvc('rwx-block')]],
      ['an RWX Filesystem (NFS) claim', [pvc('rwx-fs')]],
      ['another driver’s RWO claim', [pvc('foreign-rwo')]],
      ['non-claim volumes', [{ name: 'ci', cloudInitNoCloud: { userData: '#cloud-config' } }]],
      ['the same good claim twice', [pvc('rwx-block'), dataVolume('rwx-block')]],
    ])('allows %s', async (_, volumes) => {
      expect(await check(kind, vm(kind, 'LiveMigrate', volumes))).toEqual({ allowed: true });
    });

    it.each([
      ['rwo-fs', pvc('rwo-fs'), 'ReadWriteOnce, Filesystem: not ReadWriteMany'],
      ['rwop-block', pvc('rwop-block'), 'ReadWriteOncePod, Block: not ReadWriteMany'],
      ['no-modes', pvc('no-modes'), 'no access mode, Filesystem: not ReadWriteMany'],
      ['rwx-block-plain', pvc('rwx-block-plain'), 'ReadWriteMany Block, but its volume is not migratable'],
      ['rootdisk', dataVolume('rootdisk'), 'ReadWriteOnce, Block: not ReadWriteMany'],
    ])('forbids Tandem claim %s (403)', async (name, volume, reason) => {
      const verdict = await check(kind, vm(kind, 'LiveMigrate', [pvc('rwx-block'), volume]));
      expectDenied(
        verdict,
        403,
        `${kind} ${NAMESPACE}/vm1 has evictionStrategy LiveMigrate`,
        `cannot be live-migrated: ${name} (${reason}).`,
        'KubeVirt would mark the VMI not live-migratable, and node drains would hang on it',
        'accessModes [ReadWriteMany] and volumeMode Block from a StorageClass with migratable: "true"',
        'or set evictionStrategy to None or External',
      );
    });

    it('names every blocking claim in one refusal', async () => {
      const verdict = await check(
        kind,
        vm(kind, 'LiveMigrate', [pvc('rwo-fs'), pvc('missing'), dataVolume('rootdisk')]),
      );
      expectDenied(verdict, 403, 'rwo-fs (ReadWriteOnce, Filesystem: not ReadWriteMany); rootdisk (');
    });

    it.each([
      ['a claim', [pvc('missing')]],
      ['a DataVolume’s claim', [dataVolume('missing'), pvc('rwx-block')]],
    ])('allows %s that does not exist yet, with a warning naming it', async (_, volumes) => {
      const verdict = await check(kind, vm(kind, 'LiveMigrate', volumes));
      expect(verdict).toEqual({ allowed: true, warnings: [expect.stringContaining('claim missing of')] });
      const [warning = ''] = verdict.allowed ? (verdict.warnings ?? []) : [];
      expect(warning).toContain('does not exist yet, so Tandem could not check');
      // The apiserver may truncate longer warnings.
      expect(warning.length).toBeLessThanOrEqual(256);
    });

    it('refuses a namespace-less request as invalid', async () => {
      const verdict = await check(kind, vm(kind, 'LiveMigrate', [pvc('rwo-fs')]), { namespace: null });
      expectDenied(verdict, 422, 'the request has no namespace');
    });
  });

  describe('with evictionStrategy LiveMigrateIfPossible', () => {
    it('allows blocking claims with one warning each', async () => {
      const volumes = [
        pvc('rwo-fs'),
        pvc('rwx-block'),
        pvc('missing'),
        dataVolume('rootdisk'),
        pvc('foreign-rwo'),
      ];
      const verdict = await check(kind, vm(kind, 'LiveMigrateIfPossible', volumes));
      const tail = `with evictionStrategy LiveMigrateIfPossible, ${kind} ${NAMESPACE}/vm1 will be shut down on eviction instead`;
      expect(verdict).toEqual({
        allowed: true,
        warnings: [
          `claim rwo-fs cannot be live-migrated (ReadWriteOnce, Filesystem: not ReadWriteMany); ${tail}`,
          `claim rootdisk cannot be live-migrated (ReadWriteOnce, Block: not ReadWriteMany); ${tail}`,
        ],
      });
    });

    it('allows migratable claims without warnings', async () => {
      const object = vm(kind, 'LiveMigrateIfPossible', [pvc('rwx-block'), pvc('rwx-fs')]);
      expect(await check(kind, object)).toEqual({ allowed: true });
    });
  });

  describe('on UPDATE', () => {
    const bad = vm(kind, 'LiveMigrate', [pvc('rwo-fs')]);

    it.each([
      ['nothing relevant changed', bad],
      ['only the order of volumes changed', vm(kind, 'LiveMigrate', [pvc('rwo-fs'), pvc('rwo-fs')])],
    ])('allows it without checks when %s', async (_, oldObject) => {
      expect(await check(kind, bad, { operation: 'UPDATE', oldObject })).toEqual({ allowed: true });
    });

    it.each([
      ['the strategy became LiveMigrate', vm(kind, 'None', [pvc('rwo-fs')])],
      ['the strategy was absent', vm(kind, undefined, [pvc('rwo-fs')])],
      ['a claim was added', vm(kind, 'LiveMigrate', [])],
      ['a claim was replaced', vm(kind, 'LiveMigrate', [pvc('rwx-block')])],
      ['the old object is unreadable', 'garbage'],
      ['there is no old object', undefined],
    ])('checks it when %s (403)', async (_, oldObject) => {
      expectDenied(await check(kind, bad, { operation: 'UPDATE', oldObject }), 403, 'rwo-fs (ReadWriteOnce');
    });
  });
});

describe.each(KINDS)('disk cache modes of a %s', (kind) => {
  const path = kind === 'VirtualMachine' ? 'spec.template.spec' : 'spec';
  /** A VM whose disk v-<claim> has `cache`, with the given eviction strategy. */
  const withCache = (claimName: string, cache: unknown, evictionStrategy?: string) =>
    withVmiSpec(kind, {
      domain: { devices: { disks: [{ name: `v-${claimName}`, disk: { bus: 'virtio' }, cache }] } },
      ...(evictionStrategy ? { evictionStrategy } : {}),
      volumes: [pvc(claimName)],
    });

  it.each(['writeback', 'writethrough', 'unsafe'])(
    'refuses cache %s on a migratable Tandem claim whatever the eviction strategy (403, says why)',
    async (cache) => {
      for (const strategy of [undefined, 'None', 'LiveMigrate']) {
        expectDenied(
          await check(kind, withCache('rwx-block', cache, strategy)),
          403,
          `disk v-rwx-block (claim rwx-block) has cache ${cache}`,
          'stale data',
          'set cache to none',
        );
      }
    },
  );

  it.each(['none', 'directsync', undefined])(
    'allows cache %s on a migratable Tandem claim',
    async (cache) => {
      expect(await check(kind, withCache('rwx-block', cache, 'LiveMigrate'))).toEqual({ allowed: true });
    },
  );

  it('allows any cache mode on claims that are not migratable or not Tandem', async () => {
    for (const claimName of ['rwo-fs', 'foreign-rwo', 'rwx-block-plain'])
      expect(await check(kind, withCache(claimName, 'writeback'))).toMatchObject({ allowed: true });
  });

  it('refuses a cache mode KubeVirt does not know (422)', async () => {
    expectDenied(
      await check(kind, withCache('rwx-block', 'fast')),
      422,
      `${path}.domain.devices.disks[0].cache must be one of none, writethrough, writeback, directsync, unsafe, not "fast"`,
    );
  });

  it('checks an UPDATE that changes the cache mode, and lets an unchanged one through', async () => {
    const unsafe = withCache('rwx-block', 'writeback');
    expectDenied(
      await check(kind, unsafe, { operation: 'UPDATE', oldObject: withCache('rwx-block', 'none') }),
      403,
      'has cache writeback',
    );
    expect(await check(kind, unsafe, { operation: 'UPDATE', oldObject: unsafe })).toEqual({ allowed: true });
  });
});

describe('validateVirtualMachine for other kinds', () => {
  it('refuses a kind it does not handle as invalid', async () => {
    const verdict = await validateVirtualMachine(
      request('VirtualMachinePool', {}, { group: 'pool.kubevirt.io' }),
      view,
    );
    expectDenied(verdict, 422, 'not VirtualMachinePool');
  });

  it('names an object by its generateName when it has no name yet', async () => {
    const object = vm('VirtualMachineInstance', 'LiveMigrate', [pvc('rwo-fs')]);
    const verdict = await check('VirtualMachineInstance', { ...object, metadata: { generateName: 'vmi-' } });
    expectDenied(
      verdict,
      403,
      'VirtualMachineInstance vmi-* (generateName) has evictionStrategy LiveMigrate',
    );
  });
});
