import { request } from './fake-cluster-view.js';
import { TOPOLOGY_KEY, validateStorageClass } from './storage-class.js';

const sc = (parameters: unknown, extra: object = {}, provisioner = 'csi.tandem.dev') =>
  request(
    'StorageClass',
    { metadata: { name: 'fast' }, provisioner, parameters, ...extra },
    { group: 'storage.k8s.io', namespace: null },
  );

describe('StorageClass rule', () => {
  it.each([
    [{}],
    [{ numberOfReplicas: '3', fsType: 'xfs' }],
    [{ migratable: 'true', numberOfReplicas: '2' }],
    [{ nfsOptions: 'vers=4.2,softerr,timeo=300,retrans=3' }],
  ])('admits %p', (parameters) => {
    expect(validateStorageClass(sc(parameters))).toEqual({ allowed: true });
  });

  it('lists every problem at once with the class name', () => {
    const verdict = validateStorageClass(sc({ numberOfReplicas: '0', fstype: 'ext4', nfsOptions: 'udp' }));
    expect(verdict).toMatchObject({ allowed: false, code: 422 });
    if (!verdict.allowed) {
      expect(verdict.message).toMatch(/^StorageClass fast is not valid for csi\.tandem\.dev: /);
      expect(verdict.message).toMatch(/numberOfReplicas/);
      expect(verdict.message).toMatch(/fstype/);
      expect(verdict.message).toMatch(/udp/);
    }
  });

  it('refuses non-string parameter values with the YAML fix', () => {
    const verdict = validateStorageClass(sc({ numberOfReplicas: 3 }));
    if (!verdict.allowed) expect(verdict.message).toMatch(/quote numbers and booleans/);
    else throw new Error('admitted');
  });

  it.each([
    [
      [{ matchLabelExpressions: [{ key: 'topology.kubernetes.io/zone', values: ['a'] }] }],
      /Tandem nodes report only topology\.csi\.tandem\.dev\/node/,
    ],
    [
      [{ matchLabelExpressions: [{ key: TOPOLOGY_KEY, values: [] }] }],
      /values must list one or more node names/,
    ],
    [[{}], /needs matchLabelExpressions/],
    ['zone-a', /must be a list/],
  ])('refuses allowedTopologies %p', (allowedTopologies, message) => {
    const verdict = validateStorageClass(sc({}, { allowedTopologies }));
    if (!verdict.allowed) expect(verdict.message).toMatch(message);
    else throw new Error('admitted');
  });

  it('admits allowedTopologies on the node key', () => {
    const allowedTopologies = [
      { matchLabelExpressions: [{ key: TOPOLOGY_KEY, values: ['node-1', 'node-2'] }] },
    ];
    expect(validateStorageClass(sc({}, { allowedTopologies })).allowed).toBe(true);
  });

  it("leaves other provisioners' classes alone", () => {
    expect(validateStorageClass(sc({ anything: 'goes' }, {}, 'ebs.csi.aws.com')).allowed).toBe(true);
  });
});
