import { applyPatch } from 'rfc6902';
import { mutate } from './dispatch.js';
import { request } from './rules/fake-cluster-view.js';

const classRequest = (object: object, operation: 'CREATE' | 'UPDATE' = 'CREATE') =>
  request('StorageClass', object, {
    group: 'storage.k8s.io',
    namespace: null,
    operation,
    ...(operation === 'UPDATE' ? { oldObject: object } : {}),
  });

describe('StorageClass mutation (explicit defaults)', () => {
  it('writes every default into a class without parameters, as an RFC 6902 patch', () => {
    const object = { metadata: { name: 'sc' }, provisioner: 'csi.tandem.dev' };
    const verdict = mutate(classRequest(object));
    if (!verdict.allowed || !verdict.patch) throw new Error('expected a patch');
    const patched = structuredClone(object) as { parameters?: Record<string, string> };
    expect(applyPatch(patched, verdict.patch).every((e) => e === null)).toBe(true);
    expect(patched.parameters).toEqual({
      numberOfReplicas: '3',
      staleReplicaTimeout: expect.any(String),
      migratable: 'false',
      fsType: 'ext4',
      nfsOptions: 'vers=4.1,noresvport,softerr,timeo=600,retrans=5',
    });
  });

  it('keeps given values verbatim and adds only what is missing', () => {
    const object = {
      metadata: { name: 'sc' },
      provisioner: 'csi.tandem.dev',
      parameters: { numberOfReplicas: '2', fsType: 'xfs' },
    };
    const verdict = mutate(classRequest(object));
    if (!verdict.allowed || !verdict.patch) throw new Error('expected a patch');
    const paths = verdict.patch.map((op) => `${op.op} ${op.path}`);
    expect(paths).not.toContain('replace /parameters/numberOfReplicas');
    expect(paths).not.toContain('replace /parameters/fsType');
    expect(paths).toContain('add /parameters/migratable');
  });

  it.each([
    ['another provisioner', { provisioner: 'ebs.csi.aws.com' }, 'CREATE'],
    [
      'invalid parameters (left to validation)',
      { provisioner: 'csi.tandem.dev', parameters: { numberOfReplicas: 'x' } },
      'CREATE',
    ],
    ['an update', { provisioner: 'csi.tandem.dev' }, 'UPDATE'],
  ] as const)('does not patch %s', (_what, object, operation) => {
    expect(mutate(classRequest({ metadata: { name: 'sc' }, ...object }, operation))).toEqual({
      allowed: true,
    });
  });
});
