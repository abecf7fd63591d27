import { CREATED_BY_LABEL, MIGRATION_JOB_LABEL, VM_NAME_LABEL } from '../../lib/kubevirt/vocabulary.js';
import {
  diskOptions,
  guestCommandLine,
  guestMemory,
  type LauncherPodJson,
  launcherPod,
  migrationTargetPod,
} from './launcher.js';

describe('diskOptions', () => {
  it('opens the disk as virt-launcher does by default: O_DIRECT, flushes passed on, native AIO', () => {
    expect(diskOptions('/dev/vm-disk', 'none')).toEqual([
      '-blockdev',
      'driver=host_device,filename=/dev/vm-disk,node-name=disk0,cache.direct=on,cache.no-flush=off,aio=native,discard=unmap',
      '-device',
      'virtio-blk-pci,drive=disk0,write-cache=on',
    ]);
  });

  it.each([
    ['directsync', 'cache.direct=on', 'aio=native', 'write-cache=off'],
    ['writethrough', 'cache.direct=off', 'aio=threads', 'write-cache=off'],
    ['writeback', 'cache.direct=off', 'aio=threads', 'write-cache=on'],
  ] as const)('maps cache=%s the way QEMU defines it', (mode, direct, aio, writeCache) => {
    const [, blockdev, , device] = diskOptions('/d', mode);
    expect(blockdev).toContain(direct);
    expect(blockdev).toContain(aio);
    expect(device).toContain(writeCache);
  });
});

describe('guestMemory', () => {
  it('keeps the RAM block off a multiple of 256 KiB, where QEMU 7.2 under TCG loses stores in a migration', () => {
    for (const mib of [64, 128, 256, 1024]) {
      const kib = Number(guestMemory(mib).replace(/K$/, ''));
      expect(kib).toBeGreaterThanOrEqual(mib * 1024);
      expect(kib % 8).toBe(0); // QEMU rounds RAM up to 8 KiB: the size given is the size it uses
      expect(kib % 256).not.toBe(0);
    }
  });
});

describe('launcher pods', () => {
  const source = launcherPod({
    namespace: 'vms',
    name: 'virt-launcher-guest-abcde',
    vm: 'guest',
    vmiUid: 'uid-1',
    claim: 'guest-disk',
    node: 'node-1',
    guest: { verifyEveryMs: 2000 },
  });

  it("carries KubeVirt's labels and runs QEMU on the claim's block device", () => {
    expect(source.metadata.labels).toEqual({
      'kubevirt.io': 'virt-launcher',
      [VM_NAME_LABEL]: 'guest',
      [CREATED_BY_LABEL]: 'uid-1',
    });
    const [container] = source.spec.containers;
    expect(container?.volumeDevices).toEqual([{ name: 'disk', devicePath: '/dev/vm-disk' }]);
    expect(container?.command).toContain(guestCommandLine({ verifyEveryMs: 2000 }));
    expect(container?.command).not.toContain('-incoming');
  });

  it('makes a target pod of the same machine that waits for the stream, on the target node', () => {
    const target = migrationTargetPod(source as unknown as LauncherPodJson, {
      name: 'virt-launcher-guest-fghij',
      node: 'node-2',
      migration: { uid: 'mig-1', name: 'guest-migration-x' },
    });
    expect(target.metadata.labels[MIGRATION_JOB_LABEL]).toBe('mig-1');
    expect(target.spec.nodeSelector).toEqual({ 'kubernetes.io/hostname': 'node-2' });
    const command = target.spec.containers[0]?.command ?? [];
    expect(command.slice(0, -2)).toEqual(source.spec.containers[0]?.command);
    expect(command.slice(-2)).toEqual(['-incoming', 'tcp:0.0.0.0:4445']);
    // A target copied again (the next migration) still listens once.
    const again = migrationTargetPod(target as unknown as LauncherPodJson, {
      name: 'virt-launcher-guest-klmno',
      node: 'node-1',
      migration: { uid: 'mig-2', name: 'guest-migration-y' },
    });
    expect((again.spec.containers[0]?.command ?? []).filter((w) => w === '-incoming')).toHaveLength(1);
  });

  it('refuses to copy a pod that is not a launcher', () => {
    expect(() =>
      migrationTargetPod(
        { metadata: { name: 'web' }, spec: { containers: [{ name: 'web' }] } },
        { name: 't', node: 'n', migration: { uid: 'u', name: 'm' } },
      ),
    ).toThrow(/web is not a launcher pod/);
  });
});
