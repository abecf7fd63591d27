import { claim, fakeClusterView, request, storageClass } from './fake-cluster-view.js';
import { validateClaim } from './pvc.js';

const view = fakeClusterView({
  storageClasses: [
    storageClass('plain'),
    storageClass('migratable', { migratable: 'true' }),
    storageClass('other', { provisioner: 'ebs.csi.aws.com', migratable: 'true' }),
    { metadata: { name: 'broken' }, provisioner: 'csi.tandem.dev', parameters: { numberOfReplicas: 'lots' } },
  ],
});
const check = (accessModes: string[], volumeMode: string | undefined, storageClassName: string | undefined) =>
  validateClaim(
    request(
      'PersistentVolumeClaim',
      claim('c', {
        accessModes,
        ...(volumeMode ? { volumeMode } : {}),
        ...(storageClassName ? { storageClassName } : {}),
      }),
    ),
    view,
  );

describe('PersistentVolumeClaim rule', () => {
  // Every legal combination of the design's table.
  const legal: [string[], string | undefined, string][] = [
    [['ReadWriteOnce'], 'Filesystem', 'plain'],
    [['ReadWriteOnce'], undefined, 'plain'],
    [['ReadWriteOnce'], 'Block', 'plain'],
    [['ReadWriteOncePod'], 'Filesystem', 'plain'],
    [['ReadWriteOncePod'], 'Block', 'plain'],
    [['ReadWriteMany'], 'Filesystem', 'plain'],
    [['ReadWriteMany'], 'Block', 'migratable'],
  ];
  it.each(legal)('admits %p %p on class %p', async (modes, volumeMode, sc) => {
    expect(await check(modes, volumeMode, sc)).toEqual({ allowed: true });
  });

  const illegal: [string[], string | undefined, string, RegExp][] = [
    [['ReadWriteMany'], 'Block', 'plain', /needs a StorageClass with migratable: "true"/],
    [['ReadWriteOnce'], 'Block', 'migratable', /migratable class serves only ReadWriteMany \+ Block/],
    [['ReadWriteOnce'], 'Filesystem', 'migratable', /migratable class serves only/],
    [['ReadWriteOncePod'], 'Block', 'migratable', /migratable class serves only/],
    [['ReadWriteMany'], 'Filesystem', 'migratable', /served over NFS and cannot be migratable/],
    [['ReadOnlyMany'], 'Filesystem', 'plain', /does not serve access mode ReadOnlyMany/],
    [['ReadWriteOnce', 'ReadWriteMany'], 'Block', 'migratable', /exactly one access mode/],
    [[], 'Block', 'plain', /accessModes is empty/],
    [['ReadWriteOnce'], 'Filesystem', 'broken', /StorageClass broken has invalid parameters/],
  ];
  it.each(illegal)('refuses %p %p on class %p', async (modes, volumeMode, sc, message) => {
    const verdict = await check(modes, volumeMode, sc);
    expect(verdict).toMatchObject({ allowed: false, code: 422 });
    if (!verdict.allowed) {
      expect(verdict.message).toMatch(message);
      expect(verdict.message).toMatch(/claim c/);
    }
  });

  it('leaves claims of other drivers, of no class and of unknown classes alone', async () => {
    expect((await check(['ReadWriteMany'], 'Block', 'other')).allowed).toBe(true);
    expect((await check(['ReadWriteMany'], 'Block', undefined)).allowed).toBe(true);
    expect((await check(['ReadWriteMany'], 'Block', 'not-created-yet')).allowed).toBe(true);
  });

  it('refuses changing access modes, volume mode or class on update', async () => {
    const before = claim('c', {
      accessModes: ['ReadWriteOnce'],
      volumeMode: 'Block',
      storageClassName: 'plain',
    });
    const after = claim('c', {
      accessModes: ['ReadWriteMany'],
      volumeMode: 'Filesystem',
      storageClassName: 'plain',
    });
    const verdict = await validateClaim(
      request('PersistentVolumeClaim', after, { operation: 'UPDATE', oldObject: before }),
      view,
    );
    expect(verdict).toMatchObject({ allowed: false, code: 422 });
    if (!verdict.allowed) expect(verdict.message).toMatch(/accessModes, volumeMode of a claim cannot change/);
  });

  it.each([
    [{ spec: 'x' }, /not a PersistentVolumeClaim/],
    [{ spec: { accessModes: 'ReadWriteOnce' } }, /list of strings/],
    [{ spec: { accessModes: ['ReadWriteOnce'], volumeMode: 'Raw' } }, /Filesystem or Block/],
    [{ spec: { accessModes: ['ReadWriteOnce'], storageClassName: 3 } }, /must be a string/],
  ])('refuses malformed object %p', async (object, message) => {
    const verdict = await validateClaim(request('PersistentVolumeClaim', object), view);
    expect(verdict).toMatchObject({ allowed: false, code: 422 });
    if (!verdict.allowed) expect(verdict.message).toMatch(message);
  });
});
