import type { V1OwnerReference, V1Pod } from '@kubernetes/client-node';
import type { Verdict } from '../admission.js';
import {
  claim,
  fakeClusterView,
  NAMESPACE,
  type PodOptions,
  persistentVolume,
  pod,
  request,
  storageClass,
} from './fake-cluster-view.js';
import { validatePod } from './pod.js';

const DISK = 'disk';
const cluster = {
  storageClasses: [
    storageClass('migratable', { migratable: 'true' }),
    storageClass('plain'),
    storageClass('other', { provisioner: 'nfs.csi.k8s.io' }),
  ],
  persistentVolumes: [persistentVolume('pv-disk', { migratable: 'true' })],
  claims: [
    claim(DISK, { volumeName: 'pv-disk', accessModes: ['ReadWriteMany'], volumeMode: 'Block' }),
    claim('unbound-disk', {
      storageClassName: 'migratable',
      accessModes: ['ReadWriteMany'],
      volumeMode: 'Block',
    }),
    claim('plain', { storageClassName: 'plain', accessModes: ['ReadWriteOnce'] }),
    claim('shared-files', { storageClassName: 'plain', accessModes: ['ReadWriteMany'] }),
    claim('foreign', { storageClassName: 'other', accessModes: ['ReadWriteMany'] }),
  ],
};

const launcherLabels = (vm: string, vmiUid?: string): Record<string, string> => ({
  'kubevirt.io': 'virt-launcher',
  'vm.kubevirt.io/name': vm,
  ...(vmiUid ? { 'kubevirt.io/created-by': vmiUid } : {}),
});
const hotplugLabels = (vm: string, vmiUid?: string): Record<string, string> => ({
  ...launcherLabels(vm, vmiUid),
  'kubevirt.io': 'hotplug-disk',
});
/** What KubeVirt puts on a hotplug attachment pod: its role, no VM labels. */
const bareHotplugLabels = { 'kubevirt.io': 'hotplug-disk' };
const controlledBy = (name: string, kind = 'Pod', uid = `uid-${name}`): V1OwnerReference[] => [
  { apiVersion: 'v1', kind, name, uid, controller: true },
];

const launcher = (name: string, vm: string, vmiUid?: string, options: PodOptions = {}) =>
  pod(name, { labels: launcherLabels(vm, vmiUid), claims: [DISK], ...options });

async function admit(object: unknown, existing: V1Pod[] = [], namespace: string | null = NAMESPACE) {
  return validatePod(request('Pod', object, { namespace }), fakeClusterView({ ...cluster, pods: existing }));
}

function expectForbidden(verdict: Verdict, ...parts: string[]) {
  expect(verdict).toMatchObject({ allowed: false, code: 403 });
  if (verdict.allowed) return;
  for (const part of parts) expect(verdict.message).toContain(part);
}

describe('validatePod', () => {
  it.each(['UPDATE', 'DELETE', 'CONNECT'] as const)(
    'allows %s without reading the object',
    async (operation) => {
      const verdict = await validatePod(
        request('Pod', 'not a pod', { operation }),
        fakeClusterView({ ...cluster, pods: [] }),
      );
      expect(verdict).toEqual({ allowed: true });
    },
  );

  it.each([
    ['a string', 'pod', 'not a Pod'],
    ['null', null, 'not a Pod'],
    ['an array', [], 'not a Pod'],
    ['no metadata', { spec: {} }, 'metadata must be an object'],
    ['no spec', { metadata: { name: 'p' } }, 'spec must be an object'],
    ['volumes not a list', { metadata: {}, spec: { volumes: {} } }, 'spec.volumes must be a list'],
    ['a volume not an object', { metadata: {}, spec: { volumes: [7] } }, 'spec.volumes[0] must be an object'],
    [
      'a claim without a name',
      { metadata: {}, spec: { volumes: [{ name: 'a', persistentVolumeClaim: {} }] } },
      'spec.volumes[0].persistentVolumeClaim.claimName',
    ],
    [
      'an empty claim name',
      { metadata: {}, spec: { volumes: [{ name: 'a', persistentVolumeClaim: { claimName: '' } }] } },
      'spec.volumes[0].persistentVolumeClaim.claimName',
    ],
    ['labels not an object', { metadata: { labels: 'x' }, spec: {} }, 'metadata.labels must be an object'],
    [
      'a label not a string',
      { metadata: { labels: { a: 1 } }, spec: {} },
      'metadata.labels["a"] must be a string',
    ],
    [
      'owners not a list',
      { metadata: { ownerReferences: {} }, spec: {} },
      'metadata.ownerReferences must be a list',
    ],
    [
      'an owner without a name',
      { metadata: { ownerReferences: [{}] }, spec: {} },
      'metadata.ownerReferences[0]',
    ],
  ])('refuses an object with %s as invalid (422)', async (_, object, message) => {
    const verdict = await admit(object);
    expect(verdict).toMatchObject({ allowed: false, code: 422 });
    if (!verdict.allowed) expect(verdict.message).toContain(message);
  });

  it('refuses a request without a namespace as invalid, and takes the one in metadata', async () => {
    const object = launcher('virt-launcher-vm1-a', 'vm1');
    const verdict = await admit(
      { ...object, metadata: { ...object.metadata, namespace: undefined } },
      [],
      null,
    );
    expect(verdict).toMatchObject({
      allowed: false,
      code: 422,
      message: expect.stringContaining('no namespace'),
    });
    expect(await admit(object, [], null)).toEqual({ allowed: true });
  });

  it.each([
    ['has no volumes', pod('plain-pod')],
    ['uses a claim that does not exist yet', pod('plain-pod', { claims: ['absent'] })],
    ['uses a non-migratable Tandem claim', pod('plain-pod', { claims: ['plain'] })],
    ['uses a Tandem NFS claim', pod('plain-pod', { claims: ['shared-files'] })],
    ['uses another driver’s claim', pod('plain-pod', { claims: ['foreign'] })],
  ])('allows any pod that %s, whoever else uses the claim', async (_, object) => {
    const others = ['a', 'b', 'c'].map((n) =>
      pod(`other-${n}`, { claims: ['absent', 'plain', 'shared-files'] }),
    );
    expect(await admit(object, others)).toEqual({ allowed: true });
  });

  describe('who may open a migratable volume', () => {
    const owner = launcher('virt-launcher-vm1-a', 'vm1', 'vmi-1');
    const hotplug = (labels: Record<string, string>, ownerReferences?: V1OwnerReference[]) =>
      pod('hp-vm1', { labels, claims: [DISK], ownerReferences });

    it.each([
      ['a virt-launcher pod with a VMI UID', launcher('virt-launcher-vm1-a', 'vm1', 'vmi-1')],
      ['a virt-launcher pod without a VMI UID', launcher('virt-launcher-vm1-a', 'vm1')],
      [
        'a virt-launcher pod of an unbound claim',
        launcher('l', 'vm1', undefined, { claims: ['unbound-disk'] }),
      ],
      [
        'a hotplug pod of its launcher’s VMI',
        hotplug(hotplugLabels('vm1', 'vmi-1'), controlledBy('virt-launcher-vm1-a')),
      ],
      [
        'a hotplug pod without a VMI UID, same VM name',
        hotplug(hotplugLabels('vm1'), controlledBy('virt-launcher-vm1-a')),
      ],
      [
        'a hotplug pod with no VM labels, as KubeVirt renders it, of a launcher of the VM',
        hotplug(bareHotplugLabels, controlledBy('virt-launcher-vm1-a')),
      ],
      [
        'a hotplug pod with only its launcher’s VMI UID',
        hotplug(
          { ...bareHotplugLabels, 'kubevirt.io/created-by': 'vmi-1' },
          controlledBy('virt-launcher-vm1-a'),
        ),
      ],
    ])('allows %s', async (_, object) => {
      expect(await admit(object, [owner])).toEqual({ allowed: true });
    });

    it.each([
      [
        'no VM name label',
        pod('p', { labels: { 'kubevirt.io': 'virt-launcher' }, claims: [DISK] }),
        'it has no label vm.kubevirt.io/name',
      ],
      [
        'no kubevirt.io label',
        pod('p', { labels: { 'vm.kubevirt.io/name': 'vm1' }, claims: [DISK] }),
        'it has no label kubevirt.io',
      ],
      [
        'another kubevirt.io role',
        pod('p', { labels: { ...launcherLabels('vm1'), 'kubevirt.io': 'virt-handler' }, claims: [DISK] }),
        'its label kubevirt.io is "virt-handler"',
      ],
      [
        'a hotplug pod without owner',
        hotplug(hotplugLabels('vm1', 'vmi-1')),
        'without a controller owner reference',
      ],
      [
        'a hotplug pod with no VM labels and no owner',
        hotplug(bareHotplugLabels),
        'without a controller owner reference',
      ],
      [
        'a hotplug pod with no VM labels whose owner is gone',
        hotplug(bareHotplugLabels, controlledBy('virt-launcher-gone')),
        'its controller pod virt-launcher-gone does not exist',
      ],
      [
        'a hotplug pod with no VM labels owned by a launcher without a VM name',
        hotplug(bareHotplugLabels, controlledBy('virt-launcher-anonymous')),
        'its controller pod virt-launcher-anonymous has no label vm.kubevirt.io/name',
      ],
      [
        'a hotplug pod whose VMI UID label contradicts its owner',
        hotplug(
          { ...bareHotplugLabels, 'kubevirt.io/created-by': 'vmi-2' },
          controlledBy('virt-launcher-vm1-a'),
        ),
        'belongs to VM vm1 (VMI UID vmi-1), it to the VM of VMI UID vmi-2',
      ],
      [
        'a hotplug pod with only a non-controller owner',
        hotplug(hotplugLabels('vm1', 'vmi-1'), [
          {
            apiVersion: 'v1',
            kind: 'Pod',
            name: 'virt-launcher-vm1-a',
            uid: 'uid-virt-launcher-vm1-a',
            controller: false,
          },
        ]),
        'without a controller owner reference',
      ],
      [
        'a hotplug pod owned by a ReplicaSet',
        hotplug(hotplugLabels('vm1'), controlledBy('rs', 'ReplicaSet')),
        'its controller is ReplicaSet rs, not a pod',
      ],
      [
        'a hotplug pod whose owner is gone',
        hotplug(hotplugLabels('vm1'), controlledBy('virt-launcher-gone')),
        'its controller pod virt-launcher-gone does not exist',
      ],
      [
        'a hotplug pod whose owner was recreated',
        hotplug(hotplugLabels('vm1'), controlledBy('virt-launcher-vm1-a', 'Pod', 'old-uid')),
        'with UID old-uid, but that pod now has UID uid-virt-launcher-vm1-a',
      ],
      [
        'a hotplug pod owned by a non-launcher pod',
        hotplug(hotplugLabels('vm1'), controlledBy('hp-other')),
        'its controller pod hp-other is not a virt-launcher pod',
      ],
      [
        'a hotplug pod owned by another VMI’s launcher',
        hotplug(hotplugLabels('vm1', 'vmi-2'), controlledBy('virt-launcher-vm1-a')),
        'belongs to VM vm1 (VMI UID vmi-1), it to VM vm1 (VMI UID vmi-2)',
      ],
      [
        'a hotplug pod owned by another VM’s launcher',
        hotplug(hotplugLabels('vm2'), controlledBy('virt-launcher-vm1-a')),
        'belongs to VM vm1 (VMI UID vmi-1), it to VM vm2',
      ],
    ])('forbids a pod with %s (403)', async (_, object, problem) => {
      const hotplugOwner = pod('hp-other', { labels: hotplugLabels('vm1', 'vmi-1') });
      const anonymous = pod('virt-launcher-anonymous', { labels: { 'kubevirt.io': 'virt-launcher' } });
      const verdict = await admit(object, [owner, hotplugOwner, anonymous]);
      expectForbidden(
        verdict,
        `pod ${object.metadata?.name} may not use claim ${DISK}`,
        problem,
        'Rule migratable-volume-pod-identity',
        'Allowed: a pod labelled kubevirt.io=virt-launcher and vm.kubevirt.io/name=<vm>',
      );
    });

    it('names a pod by its generateName when it has no name yet', async () => {
      const object = pod('x', { labels: { 'kubevirt.io': 'virt-launcher' }, claims: [DISK] });
      const verdict = await admit({ ...object, metadata: { generateName: 'virt-launcher-vm1-' } });
      expectForbidden(verdict, 'pod virt-launcher-vm1-* (generateName) may not use claim disk');
    });
  });

  describe('who else uses the volume', () => {
    const target = launcher('virt-launcher-vm1-b', 'vm1', 'vmi-1');

    it.each([
      ['nobody', []],
      ['the source pod of the same VMI', [launcher('virt-launcher-vm1-a', 'vm1', 'vmi-1')]],
      ['a pod of the same VM name without a VMI UID', [launcher('virt-launcher-vm1-a', 'vm1')]],
      ['a terminated pod of another VM', [launcher('old', 'vm2', 'vmi-2', { phase: 'Succeeded' })]],
      ['a failed pod of another VM', [launcher('old', 'vm2', 'vmi-2', { phase: 'Failed' })]],
      ['an earlier copy of this very pod', [launcher('virt-launcher-vm1-b', 'vm2', 'vmi-2')]],
      [
        'the source pod, and terminated ones',
        [
          launcher('virt-launcher-vm1-a', 'vm1', 'vmi-1'),
          launcher('virt-launcher-vm1-0', 'vm1', 'vmi-1', { phase: 'Succeeded' }),
          launcher('virt-launcher-vm1-1', 'vm1', 'vmi-1', { phase: 'Failed' }),
        ],
      ],
      [
        'a pod using other claims only',
        [launcher('virt-launcher-vm2-a', 'vm2', 'vmi-2', { claims: ['plain'] })],
      ],
    ])('allows a virt-launcher pod when the claim is used by %s', async (_, existing) => {
      expect(await admit(target, existing)).toEqual({ allowed: true });
    });

    it.each([
      [
        'another VMI of the same VM name',
        launcher('virt-launcher-vm1-x', 'vm1', 'vmi-9'),
        'VM vm1 (VMI UID vmi-9)',
      ],
      ['another VM (no VMI UID)', launcher('virt-launcher-vm2-x', 'vm2'), 'VM vm2'],
      [
        'a pod of no VM',
        pod('virt-launcher-vm2-x', { claims: [DISK] }),
        'no VM (no label vm.kubevirt.io/name)',
      ],
      [
        'a terminating pod of another VM',
        launcher('virt-launcher-vm2-x', 'vm2', 'vmi-2', { terminating: true }),
        'VM vm2 (VMI UID vmi-2)',
      ],
      [
        'a pending pod of another VM',
        launcher('virt-launcher-vm2-x', 'vm2', 'vmi-2', { phase: 'Pending' }),
        'VM vm2 (VMI UID vmi-2)',
      ],
    ])('forbids a second pod when %s uses the claim (403)', async (_, other, otherVm) => {
      const verdict = await admit(target, [other]);
      expectForbidden(
        verdict,
        `pod virt-launcher-vm1-b of VM vm1 (VMI UID vmi-1) may not use claim disk`,
        `pod ${other.metadata?.name} of ${otherVm} already uses it`,
        'Rule migratable-volume-one-vm',
        `Allowed: a pod of ${otherVm}, or this pod once ${other.metadata?.name} has terminated`,
      );
    });

    describe('hotplug pods, which KubeVirt gives no VM labels', () => {
      // Launchers own the hotplug pods; the hotplug claim is in the hotplug pods' volumes only.
      const launcherA = launcher('virt-launcher-vm1-a', 'vm1', 'vmi-1', { claims: [] });
      const launcherB = launcher('virt-launcher-vm1-b', 'vm1', 'vmi-1', { claims: [] });
      const launcherVm2 = launcher('virt-launcher-vm2-a', 'vm2', 'vmi-2', { claims: [] });
      const bareHotplug = (name: string, owner: string) =>
        pod(name, { labels: bareHotplugLabels, claims: [DISK], ownerReferences: controlledBy(owner) });

      it('allows the target hotplug pod of a migration next to the source one', async () => {
        const existing = [launcherA, launcherB, bareHotplug('hp-disk-a', 'virt-launcher-vm1-a')];
        expect(await admit(bareHotplug('hp-disk-b', 'virt-launcher-vm1-b'), existing)).toEqual({
          allowed: true,
        });
      });

      it('allows a launcher of the VM when a hotplug pod of the VM uses the claim', async () => {
        const existing = [launcherA, bareHotplug('hp-disk-a', 'virt-launcher-vm1-a')];
        expect(await admit(target, existing)).toEqual({ allowed: true });
      });

      it('forbids a hotplug pod of another VM’s launcher while this VM uses the claim (403)', async () => {
        const existing = [launcherVm2, launcher('virt-launcher-vm1-a', 'vm1', 'vmi-1')];
        const verdict = await admit(bareHotplug('hp-disk-vm2', 'virt-launcher-vm2-a'), existing);
        expectForbidden(
          verdict,
          'pod hp-disk-vm2 of VM vm2 (VMI UID vmi-2) may not use claim disk',
          'pod virt-launcher-vm1-a of VM vm1 (VMI UID vmi-1) already uses it',
          'Rule migratable-volume-one-vm',
        );
      });

      it('forbids a launcher when another VM’s hotplug pod uses the claim (403)', async () => {
        const existing = [launcherVm2, bareHotplug('hp-disk-vm2', 'virt-launcher-vm2-a')];
        const verdict = await admit(target, existing);
        expectForbidden(
          verdict,
          'pod hp-disk-vm2 of VM vm2 (VMI UID vmi-2) already uses it',
          'Rule migratable-volume-one-vm',
        );
      });

      it('counts a hotplug pod whose owner cannot be resolved as a pod of no VM (403)', async () => {
        const verdict = await admit(target, [bareHotplug('hp-disk-orphan', 'virt-launcher-gone')]);
        expectForbidden(
          verdict,
          'pod hp-disk-orphan of no VM (its controller pod virt-launcher-gone does not exist) already uses it',
          'Rule migratable-volume-one-vm',
        );
      });
    });

    it('forbids a third pod of the same VM (403)', async () => {
      const existing = [
        launcher('virt-launcher-vm1-a', 'vm1', 'vmi-1'),
        launcher('virt-launcher-vm1-c', 'vm1', 'vmi-1', { terminating: true }),
      ];
      const verdict = await admit(target, existing);
      expectForbidden(
        verdict,
        'pod virt-launcher-vm1-b may not use claim disk: pods virt-launcher-vm1-a, virt-launcher-vm1-c already use it',
        'Rule migratable-volume-two-pods',
        'source and target virt-launcher pods of one live migration',
        'Allowed: this pod once one of them has terminated',
      );
    });

    it('checks every migratable claim of the pod', async () => {
      const object = launcher('virt-launcher-vm1-b', 'vm1', 'vmi-1', {
        claims: ['plain', DISK, 'unbound-disk'],
      });
      const stranger = launcher('virt-launcher-vm2-a', 'vm2', 'vmi-2', { claims: ['unbound-disk'] });
      const verdict = await admit(object, [launcher('virt-launcher-vm1-a', 'vm1', 'vmi-1'), stranger]);
      expectForbidden(verdict, 'may not use claim unbound-disk', 'pod virt-launcher-vm2-a of VM vm2');
    });
  });
});
