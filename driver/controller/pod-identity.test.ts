import type { PodUse } from './cluster.js';
import { checkMigrationPods } from './pod-identity.js';

const launcher = (name: string, node: string, vm: string, vmiUid?: string): PodUse => ({
  namespace: 'vms',
  name,
  uid: `uid-${name}`,
  node,
  labels: {
    'kubevirt.io': 'virt-launcher',
    'vm.kubevirt.io/name': vm,
    ...(vmiUid ? { 'kubevirt.io/created-by': vmiUid } : {}),
  },
  ownerKinds: ['VirtualMachineInstance'],
});

/** KubeVirt labels a hotplug pod with its role only and makes its launcher pod the controller. */
const hotplug = (
  name: string,
  node: string,
  owner?: Controller,
  labels: Record<string, string> = {},
): PodUse => ({
  namespace: 'vms',
  name,
  uid: `uid-${name}`,
  node,
  labels: { 'kubevirt.io': 'hotplug-disk', ...labels },
  ownerKinds: owner ? [owner.kind] : [],
  controller: owner,
});
type Controller = NonNullable<PodUse['controller']>;
const ownedBy = (pod: PodUse): Controller => ({ kind: 'Pod', name: pod.name, uid: pod.uid });

const a = launcher('virt-launcher-vm1-a', 'n1', 'vm1', 'vmi-1');
const b = launcher('virt-launcher-vm1-b', 'n2', 'vm1', 'vmi-1');
const other = launcher('virt-launcher-vm2-a', 'n2', 'vm2', 'vmi-2');
const notLauncher: PodUse = { ...launcher('db', 'n1', 'vm1', 'vmi-1'), labels: { app: 'db' } };

describe('checkMigrationPods', () => {
  it('refuses when no PersistentVolume names the volume', () => {
    expect(checkMigrationPods(undefined, ['n1', 'n2'])).toMatch(/no PersistentVolume names this volume/);
  });

  it.each<[string, PodUse[], string[]]>([
    ['the source and target launchers of one VMI', [a, b], ['n1', 'n2']],
    [
      'launchers of one VM name without VMI UIDs',
      [launcher('x', 'n1', 'vm1'), launcher('y', 'n2', 'vm1')],
      ['n1', 'n2'],
    ],
    ['one launcher with a VMI UID and one without, same name', [a, launcher('y', 'n2', 'vm1')], ['n1', 'n2']],
    [
      'launchers of one VMI whose name labels differ (created-by wins)',
      [a, launcher('y', 'n2', 'vm1-renamed', 'vmi-1')],
      ['n1', 'n2'],
    ],
    [
      'a hotplug pod with name labels, controlled by a launcher of its VM',
      [
        a,
        hotplug('hp-1', 'n2', ownedBy(a), {
          'vm.kubevirt.io/name': 'vm1',
          'kubevirt.io/created-by': 'vmi-1',
        }),
      ],
      ['n1', 'n2'],
    ],
    [
      'hotplug pods without name labels whose launchers are not users (resolved from the cluster)',
      [
        { ...hotplug('hp-a', 'n1', ownedBy(a)), controllerPod: a },
        { ...hotplug('hp-b', 'n2', ownedBy(b)), controllerPod: b },
      ],
      ['n1', 'n2'],
    ],
    [
      'a hotplug pod without name labels whose launcher is a user',
      [a, b, hotplug('hp-b', 'n2', ownedBy(b))],
      ['n1', 'n2'],
    ],
  ])('allows %s', (_, pods, nodes) => {
    expect(checkMigrationPods(pods, nodes)).toBeUndefined();
  });

  it.each<[string, PodUse[], RegExp, string[]?]>([
    [
      'launchers of two VMs',
      [a, other],
      /pods of more than one VM use it \(vms\/virt-launcher-vm1-a, vms\/virt-launcher-vm2-a\)/,
    ],
    [
      'launchers of one VM name but two VMIs (created-by compared before name)',
      [a, launcher('y', 'n2', 'vm1', 'vmi-9')],
      /more than one VM/,
    ],
    [
      'two VMIs of one name bridged by a launcher without a VMI UID',
      [a, launcher('x', 'n1', 'vm1'), launcher('y', 'n2', 'vm1', 'vmi-9')],
      /more than one VM/,
    ],
    [
      'three launchers of one VM',
      [a, b, launcher('c', 'n2', 'vm1', 'vmi-1')],
      /3 virt-launcher pods use it .*at most 2/,
    ],
    [
      'a pod that is not KubeVirt’s',
      [a, notLauncher],
      /pod vms\/db uses it but is not a virt-launcher.*no label kubevirt\.io/,
    ],
    [
      'a launcher without a name label',
      [a, { ...b, labels: { 'kubevirt.io': 'virt-launcher', 'kubevirt.io/created-by': 'vmi-1' } }],
      /not a virt-launcher or hotplug pod of a VM: it has no label vm\.kubevirt\.io\/name/,
    ],
    [
      'another KubeVirt role',
      [a, { ...b, labels: { ...b.labels, 'kubevirt.io': 'virt-handler' } }],
      /its label kubevirt\.io is "virt-handler"/,
    ],
    [
      'a hotplug pod without a controller',
      [a, b, hotplug('hp', 'n2')],
      /hotplug-disk pod without a controller owner reference/,
    ],
    [
      'a hotplug pod with name labels but no controller',
      [a, b, hotplug('hp', 'n2', undefined, { 'vm.kubevirt.io/name': 'vm1' })],
      /without a controller owner reference/,
    ],
    [
      'a hotplug pod controlled by another VM’s launcher',
      [a, { ...hotplug('hp', 'n2', ownedBy(other)), controllerPod: other }],
      /more than one VM/,
    ],
    [
      'a hotplug pod whose name labels disagree with its launcher',
      [
        a,
        hotplug('hp', 'n1', ownedBy(a), { 'vm.kubevirt.io/name': 'vm1', 'kubevirt.io/created-by': 'vmi-2' }),
      ],
      /its controller pod virt-launcher-vm1-a belongs to VM vm1 \(VMI UID vmi-1\), it to VM vm1 \(VMI UID vmi-2\)/,
    ],
    [
      'a hotplug pod controlled by a non-launcher pod',
      [a, { ...hotplug('hp', 'n2', ownedBy(notLauncher)), controllerPod: notLauncher }],
      /its controller pod db is not a virt-launcher pod of a VM/,
    ],
    [
      'a hotplug pod controlled by another hotplug pod',
      [
        a,
        hotplug('hp-1', 'n1', ownedBy(a)),
        hotplug('hp-2', 'n2', { kind: 'Pod', name: 'hp-1', uid: 'uid-hp-1' }),
      ],
      /pod vms\/hp-2 .*its controller pod hp-1 is not a virt-launcher pod/,
    ],
    [
      'a hotplug pod whose controller is missing',
      [a, hotplug('hp', 'n2', ownedBy(b))],
      /its controller pod virt-launcher-vm1-b does not exist/,
    ],
    [
      'a hotplug pod whose controller was recreated',
      [a, b, hotplug('hp', 'n2', { ...ownedBy(b), uid: 'old-uid' })],
      /with UID old-uid, but that pod now has UID uid-virt-launcher-vm1-b/,
    ],
    [
      'a hotplug pod controlled by a ReplicaSet',
      [a, hotplug('hp', 'n2', { kind: 'ReplicaSet', name: 'rs' })],
      /its controller is ReplicaSet rs, not a pod/,
    ],
    ['no pod on an engine node', [a, b], /no pod of the VM is scheduled on n3/, ['n1', 'n3']],
  ])('refuses %s', (_, pods, message, nodes = ['n1', 'n2']) => {
    expect(checkMigrationPods(pods, nodes)).toMatch(message);
  });

  it('counts a hotplug pod toward its VM, not as a third launcher', () => {
    const pods = [a, b, hotplug('hp-a', 'n1', ownedBy(a)), hotplug('hp-b', 'n2', ownedBy(b))];
    expect(checkMigrationPods(pods, ['n1', 'n2'])).toBeUndefined();
  });

  it('lets a hotplug pod stand for its VM on an engine node', () => {
    const pods = [a, { ...hotplug('hp-b', 'n2', ownedBy(b)), controllerPod: b }];
    expect(checkMigrationPods(pods, ['n1', 'n2'])).toBeUndefined();
  });
});
