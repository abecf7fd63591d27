import { type MigrationState, migrationSides, sameVm, vmKey, vmPodLabels, vmRef } from './vocabulary.js';

const labels = (vm?: string, vmiUid?: string, role = 'virt-launcher'): Record<string, string> => ({
  'kubevirt.io': role,
  ...(vm !== undefined ? { 'vm.kubevirt.io/name': vm } : {}),
  ...(vmiUid !== undefined ? { 'kubevirt.io/created-by': vmiUid } : {}),
});

describe('migrationSides', () => {
  it.each<[string, MigrationState | undefined, ReturnType<typeof migrationSides>]>([
    ['no state', undefined, {}],
    ['an empty state', {}, {}],
    [
      'the v1.5 fields',
      { sourceNode: 'n1', sourcePod: 'virt-launcher-a', targetNode: 'n2', targetPod: 'virt-launcher-b' },
      { sourceNode: 'n1', sourcePod: 'virt-launcher-a', targetNode: 'n2', targetPod: 'virt-launcher-b' },
    ],
    [
      'only v1.7 sourceState / targetState',
      {
        sourceState: { node: 'n1', pod: 'virt-launcher-a', migrationUID: 'm-1' },
        targetState: { node: 'n2', pod: 'virt-launcher-b', migrationUID: 'm-1' },
      },
      { sourceNode: 'n1', sourcePod: 'virt-launcher-a', targetNode: 'n2', targetPod: 'virt-launcher-b' },
    ],
    [
      'both, where the v1.5 fields win',
      {
        sourceNode: 'n1',
        targetPod: 'virt-launcher-b',
        sourceState: { node: 'old-n1', pod: 'virt-launcher-a' },
        targetState: { node: 'n2', pod: 'old-b' },
      },
      { sourceNode: 'n1', sourcePod: 'virt-launcher-a', targetNode: 'n2', targetPod: 'virt-launcher-b' },
    ],
    [
      'empty v1.5 strings, which fall back to the per-side state',
      { sourceNode: '', targetNode: '', sourceState: { node: 'n1' }, targetState: { node: 'n2' } },
      { sourceNode: 'n1', sourcePod: undefined, targetNode: 'n2', targetPod: undefined },
    ],
    [
      'only a target so far',
      { targetState: { node: 'n2' } },
      { sourceNode: undefined, sourcePod: undefined, targetNode: 'n2', targetPod: undefined },
    ],
  ])('reads %s', (_, state, sides) => {
    expect(migrationSides(state)).toEqual(sides);
  });
});

describe('vmPodLabels', () => {
  it('reads role, VM name, VMI UID and migration job', () => {
    expect(
      vmPodLabels({ ...labels('vm1', 'vmi-1'), 'kubevirt.io/migrationJobUID': 'job-1', other: 'x' }),
    ).toEqual({ role: 'virt-launcher', vmName: 'vm1', vmiUid: 'vmi-1', migrationJobUid: 'job-1' });
  });

  it.each<[string, Record<string, string> | undefined]>([
    ['no labels', undefined],
    ['an empty map', {}],
  ])('has nothing for %s', (_, given) => {
    expect(vmPodLabels(given)).toEqual({
      role: undefined,
      vmName: undefined,
      vmiUid: undefined,
      migrationJobUid: undefined,
    });
  });

  it('treats empty label values as absent (but keeps the role as written)', () => {
    expect(vmPodLabels({ ...labels('', ''), 'kubevirt.io/migrationJobUID': '' })).toEqual({
      role: 'virt-launcher',
      vmName: undefined,
      vmiUid: undefined,
      migrationJobUid: undefined,
    });
  });
});

describe('sameVm', () => {
  it.each<[string, Record<string, string>, Record<string, string>, boolean]>([
    ['one VMI UID', labels('vm1', 'vmi-1'), labels('vm1', 'vmi-1'), true],
    [
      'one VMI UID under different name labels (UID first)',
      labels('vm1', 'vmi-1'),
      labels('vm2', 'vmi-1'),
      true,
    ],
    ['two VMIs of one name (UID first)', labels('vm1', 'vmi-1'), labels('vm1', 'vmi-2'), false],
    ['one name, a UID on one side only', labels('vm1', 'vmi-1'), labels('vm1'), true],
    ['one name, no UIDs', labels('vm1'), labels('vm1'), true],
    ['two names, no UIDs', labels('vm1'), labels('vm2'), false],
    ['no name labels and no UIDs', labels(), labels(), false],
    ['empty name labels', labels(''), labels(''), false],
    ['empty UIDs fall back to the name', labels('vm1', ''), labels('vm1', 'vmi-1'), true],
    ['a UID on one side, no names', labels(undefined, 'vmi-1'), labels(), false],
  ])('%s → %s', (_, a, b, same) => {
    expect(sameVm(a, b)).toBe(same);
    expect(sameVm(b, a)).toBe(same);
  });
});

describe('vmKey', () => {
  it.each<[string, Record<string, string>, string | undefined]>([
    ['the VMI UID when known', labels('vm1', 'vmi-1'), 'uid:vmi-1'],
    ['the VMI UID without a name', labels(undefined, 'vmi-1'), 'uid:vmi-1'],
    ['the name without a UID', labels('vm1'), 'name:vm1'],
    ['the name when the UID is empty', labels('vm1', ''), 'name:vm1'],
    ['nothing without either', labels(), undefined],
    ['nothing for empty values', labels('', ''), undefined],
  ])('is %s', (_, given, key) => {
    expect(vmKey(given)).toBe(key);
  });

  it('keeps a VMI UID and a VM name that spell the same apart', () => {
    expect(vmKey(labels(undefined, 'x'))).not.toBe(vmKey(labels('x')));
  });
});

describe('vmRef', () => {
  it.each<[Record<string, string>, string]>([
    [labels('vm1', 'vmi-1'), 'VM vm1 (VMI UID vmi-1)'],
    [labels('vm1'), 'VM vm1'],
    [labels(undefined, 'vmi-1'), 'the VM of VMI UID vmi-1'],
    [labels(), 'no VM (no label vm.kubevirt.io/name)'],
  ])('names %j as %s', (given, words) => {
    expect(vmRef(given)).toBe(words);
  });
});
