import { claim, fakeClusterView, NAMESPACE, persistentVolume, storageClass } from './fake-cluster-view.js';
import { classifyClaim, isMigratableTandem } from './tandem-claim.js';

const view = fakeClusterView({
  storageClasses: [
    storageClass('tandem-migratable', { migratable: 'true' }),
    storageClass('tandem-plain', { migratable: 'false' }),
    storageClass('tandem-default'),
    storageClass('other', { provisioner: 'ebs.csi.aws.com', migratable: 'true' }),
  ],
  persistentVolumes: [
    persistentVolume('pv-true', { migratable: 'true' }),
    persistentVolume('pv-false', { migratable: 'false' }),
    persistentVolume('pv-no-attribute'),
    persistentVolume('pv-other', { driver: 'ebs.csi.aws.com', migratable: 'true' }),
    persistentVolume('pv-hostpath', { csi: false }),
  ],
  claims: [
    claim('unbound-migratable', { storageClassName: 'tandem-migratable' }),
    claim('unbound-plain', { storageClassName: 'tandem-plain' }),
    claim('unbound-default', { storageClassName: 'tandem-default' }),
    claim('unbound-other', { storageClassName: 'other' }),
    claim('unbound-missing-class', { storageClassName: 'gone' }),
    claim('unbound-no-class', { storageClassName: '' }),
    claim('unbound-class-absent'),
    claim('bound-true-class-plain', { volumeName: 'pv-true', storageClassName: 'tandem-plain' }),
    claim('bound-false-class-migratable', { volumeName: 'pv-false', storageClassName: 'tandem-migratable' }),
    claim('bound-no-attribute-class-migratable', {
      volumeName: 'pv-no-attribute',
      storageClassName: 'tandem-migratable',
    }),
    claim('bound-no-attribute-no-class', { volumeName: 'pv-no-attribute' }),
    claim('bound-other-class-tandem', { volumeName: 'pv-other', storageClassName: 'tandem-migratable' }),
    claim('bound-hostpath', { volumeName: 'pv-hostpath', storageClassName: 'tandem-migratable' }),
    claim('bound-pv-missing-class-tandem', { volumeName: 'pv-gone', storageClassName: 'tandem-migratable' }),
    claim('bound-pv-missing-class-other', { volumeName: 'pv-gone', storageClassName: 'other' }),
  ],
});

describe('classifyClaim', () => {
  it('reports a claim that does not exist', async () => {
    expect(await classifyClaim(NAMESPACE, 'nope', view)).toEqual({ kind: 'not-found' });
    expect(await classifyClaim('elsewhere', 'unbound-migratable', view)).toEqual({ kind: 'not-found' });
  });

  it.each([
    ['unbound-other', 'the class has another provisioner'],
    ['unbound-missing-class', 'the class does not exist'],
    ['unbound-no-class', 'the class is "" (none)'],
    ['unbound-class-absent', 'no class is named'],
    ['bound-other-class-tandem', 'the PV has another driver, whatever the class'],
    ['bound-hostpath', 'the PV is not a CSI volume'],
    ['bound-pv-missing-class-other', 'the PV is not visible and the class is not Tandem'],
  ])('classifies %s as not Tandem: %s', async (name) => {
    expect(await classifyClaim(NAMESPACE, name, view)).toEqual({ kind: 'not-tandem' });
  });

  it.each([
    ['unbound-migratable', true, 'class migratable: "true"'],
    ['unbound-plain', false, 'class migratable: "false"'],
    ['unbound-default', false, 'class without migratable'],
    ['bound-true-class-plain', true, 'the PV attribute wins over the class'],
    ['bound-false-class-migratable', false, 'the PV attribute wins over the class'],
    ['bound-no-attribute-class-migratable', true, 'no PV attribute: the class decides'],
    ['bound-no-attribute-no-class', false, 'no PV attribute and no class'],
    ['bound-pv-missing-class-tandem', true, 'PV not visible yet: the class decides'],
  ])('classifies %s as Tandem, migratable %s (%s)', async (name, migratable) => {
    const result = await classifyClaim(NAMESPACE, name, view);
    expect(result).toMatchObject({ kind: 'tandem', migratable });
    expect(isMigratableTandem(result)).toBe(migratable);
  });

  it.each([
    [undefined, 'Filesystem'],
    ['Filesystem', 'Filesystem'],
    ['Block', 'Block'],
  ])(
    'reads volumeMode %s as %s and passes access modes and the claim through',
    async (volumeMode, expected) => {
      const object = claim('c', {
        storageClassName: 'tandem-migratable',
        accessModes: ['ReadWriteMany'],
        volumeMode,
      });
      const result = await classifyClaim(NAMESPACE, 'c', fakeClusterView({ ...classes(), claims: [object] }));
      expect(result).toEqual({
        kind: 'tandem',
        migratable: true,
        accessModes: ['ReadWriteMany'],
        volumeMode: expected,
        claim: object,
      });
    },
  );

  it('gives an empty access mode list when the claim has none', async () => {
    const result = await classifyClaim(
      NAMESPACE,
      'c',
      fakeClusterView({ ...classes(), claims: [claim('c', { storageClassName: 'tandem-migratable' })] }),
    );
    expect(result).toMatchObject({ kind: 'tandem', accessModes: [] });
  });

  it('does not count non-Tandem claims as migratable Tandem', () => {
    expect(isMigratableTandem({ kind: 'not-found' })).toBe(false);
    expect(isMigratableTandem({ kind: 'not-tandem' })).toBe(false);
  });
});

function classes() {
  return { storageClasses: [storageClass('tandem-migratable', { migratable: 'true' })] };
}
