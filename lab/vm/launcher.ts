/**
 * The lab's stand-in for KubeVirt's virt-launcher pod: a pod with KubeVirt's labels whose
 * container runs QEMU on the raw block device the kubelet published through `volumeDevices`.
 * It opens the disk the way virt-launcher's libvirt does for a block volume with KubeVirt's
 * default cache mode: `host_device`, `cache=none` (O_DIRECT, flushes passed through), native AIO
 * (KubeVirt picks `io=native` for block devices with cache none). The guest is the built-in one
 * (lab/images/guest) or any kernel/initramfs in the image. QMP listens on the pod's address, and
 * a migration target also listens for the incoming migration stream, as QEMU's `-incoming`
 * (KubeVirt tunnels this through virt-handler; here it goes straight over the pod network).
 */

import {
  APP_LABEL,
  CREATED_BY_LABEL,
  LAUNCHER_ROLE,
  MIGRATION_JOB_LABEL,
  MIGRATION_JOB_NAME_ANNOTATION,
  VM_NAME_LABEL,
} from '../../lib/kubevirt/vocabulary.js';
import { LAB_LAUNCHER_IMAGE } from '../cluster.js';

export const QMP_PORT = 4444;
export const MIGRATION_PORT = 4445;
/** Where the claim's block device appears in the launcher container. */
export const DISK_PATH = '/dev/vm-disk';

/**
 * QEMU's (and KubeVirt's disk `cache` field's) cache modes. `none` and `directsync` bypass the
 * host's page cache; `writeback` and `writethrough` read through it, which is stale on the node
 * that did not write (lib/kubevirt/vocabulary.ts SAFE_CACHE_MODES).
 */
export type CacheMode = 'none' | 'directsync' | 'writethrough' | 'writeback';

export interface GuestOptions {
  /** 4 KiB blocks the workload uses from the start of the disk (default 4096: 16 MiB). */
  blocks?: number;
  /** Milliseconds between two verify passes (default 3000). */
  verifyEveryMs?: number;
  /** Writes between two flushes (default 8). */
  flushEvery?: number;
  /** Milliseconds to sleep between writes (default 0: as fast as it can). */
  writePauseMs?: number;
}

export interface LauncherSpec {
  namespace: string;
  /** The pod's name. */
  name: string;
  vm: string;
  vmiUid: string;
  claim: string;
  node: string;
  cacheMode?: CacheMode;
  memoryMiB?: number;
  guest?: GuestOptions;
  /** Set for a migration's target pod: it waits for the incoming migration. */
  migration?: { uid: string; name: string };
}

/**
 * The `-blockdev` and `-device` options of a disk in one cache mode (QEMU's `cache=` shorthand).
 * `host_device` for a block device (what a launcher pod gets), `file` for an image file (the
 * benchmark's shared-file reference).
 */
export function diskOptions(
  path: string,
  mode: CacheMode,
  driver: 'host_device' | 'file' = 'host_device',
): string[] {
  const direct = mode === 'none' || mode === 'directsync';
  const writeCache = mode === 'none' || mode === 'writeback';
  // Native AIO needs O_DIRECT; buffered modes use the thread pool, as libvirt does.
  const blockdev = [
    `driver=${driver}`,
    `filename=${path}`,
    'node-name=disk0',
    `cache.direct=${direct ? 'on' : 'off'}`,
    'cache.no-flush=off',
    `aio=${direct ? 'native' : 'threads'}`,
    'discard=unmap',
  ].join(',');
  return [
    '-blockdev',
    blockdev,
    '-device',
    `virtio-blk-pci,drive=disk0,write-cache=${writeCache ? 'on' : 'off'}`,
  ];
}

/**
 * QEMU's `-m` for a guest of `mib` MiB: 8 KiB more than asked (QEMU rounds RAM to 8 KiB).
 *
 * Why: QEMU 7.2 (Debian 12's) loses guest stores during a live migration under TCG. When a RAM
 * block's length is a multiple of 64 pages (256 KiB), the migration's dirty-bitmap sync takes a
 * fast path that clears the dirty bits without re-arming the TCG TLB's not-dirty trap, so a
 * store through a TLB entry filled before the sync dirties nothing and the page is never sent
 * again: the target resumes with a stale copy of it (fixed upstream in QEMU 9.0, "physmem: Fix
 * migration dirty bitmap coherency with TCG memory access"; KVM's dirty log is not affected).
 * The lab's guest saw it as blocks holding newer writes than its own record of them. A length
 * off that multiple takes the slow path, which re-arms the trap. docs/testing.md has the
 * reproduction without Tandem and the counts.
 */
export function guestMemory(mib: number): string {
  return `${mib * 1024 + 8}K`;
}

/** The guest's kernel command line: serial console and the workload's settings. */
export function guestCommandLine(guest: GuestOptions = {}): string {
  const words = ['console=ttyS0', 'quiet', 'panic=-1'];
  if (guest.blocks !== undefined) words.push(`tandem.blocks=${guest.blocks}`);
  if (guest.verifyEveryMs !== undefined) words.push(`tandem.verify_every_ms=${guest.verifyEveryMs}`);
  if (guest.flushEvery !== undefined) words.push(`tandem.flush_every=${guest.flushEvery}`);
  if (guest.writePauseMs !== undefined) words.push(`tandem.write_pause_ms=${guest.writePauseMs}`);
  return words.join(' ');
}

/**
 * QEMU's command line. Source and target must describe the same machine; the target adds
 * `-incoming`. Software emulation (TCG): KVM does not work on these machines.
 */
export function qemuCommand(options: {
  vm: string;
  disk: string;
  diskDriver?: 'host_device' | 'file';
  cacheMode: CacheMode;
  memoryMiB: number;
  guest?: GuestOptions;
  kernel?: string;
  initrd?: string;
  qmp: string;
  incoming?: string;
}): string[] {
  return [
    'qemu-system-x86_64',
    '-name',
    `guest=${options.vm}`,
    '-accel',
    'tcg',
    '-machine',
    'q35',
    '-cpu',
    'qemu64',
    '-m',
    guestMemory(options.memoryMiB),
    '-smp',
    '1',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    // The guest's console goes to QEMU's stdout: the pod's log (`kubectl logs`).
    '-serial',
    'stdio',
    '-kernel',
    options.kernel ?? '/guest/vmlinuz',
    '-initrd',
    options.initrd ?? '/guest/initrd.img',
    '-append',
    guestCommandLine(options.guest),
    ...diskOptions(options.disk, options.cacheMode, options.diskDriver),
    '-qmp',
    `${options.qmp},server=on,wait=off`,
    ...(options.incoming ? ['-incoming', options.incoming] : []),
  ];
}

export function launcherPod(spec: LauncherSpec) {
  const labels: Record<string, string> = {
    [APP_LABEL]: LAUNCHER_ROLE,
    [VM_NAME_LABEL]: spec.vm,
    [CREATED_BY_LABEL]: spec.vmiUid,
    ...(spec.migration ? { [MIGRATION_JOB_LABEL]: spec.migration.uid } : {}),
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: spec.name,
      namespace: spec.namespace,
      labels,
      annotations: {
        'kubevirt.io/domain': spec.vm,
        ...(spec.migration ? { [MIGRATION_JOB_NAME_ANNOTATION]: spec.migration.name } : {}),
      },
    },
    spec: {
      // virt-controller places the target with node affinity; a selector on the hostname is the
      // same for one chosen node (and, unlike nodeName, goes through the scheduler, which a
      // WaitForFirstConsumer claim needs).
      nodeSelector: { 'kubernetes.io/hostname': spec.node },
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 5,
      // Device access to the published block device; virt-launcher runs QEMU as uid 107 with the
      // device's group, which these images do not have.
      securityContext: { runAsUser: 0 },
      containers: [
        {
          name: 'compute',
          image: LAB_LAUNCHER_IMAGE,
          imagePullPolicy: 'Never',
          command: qemuCommand({
            vm: spec.vm,
            disk: DISK_PATH,
            cacheMode: spec.cacheMode ?? 'none',
            memoryMiB: spec.memoryMiB ?? 128,
            guest: spec.guest,
            qmp: `tcp:0.0.0.0:${QMP_PORT}`,
            incoming: spec.migration ? `tcp:0.0.0.0:${MIGRATION_PORT}` : undefined,
          }),
          ports: [
            { name: 'qmp', containerPort: QMP_PORT },
            { name: 'migration', containerPort: MIGRATION_PORT },
          ],
          volumeDevices: [{ name: 'disk', devicePath: DISK_PATH }],
          resources: { requests: { cpu: '100m', memory: `${(spec.memoryMiB ?? 128) + 96}Mi` } },
        },
      ],
      volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: spec.claim } }],
    },
  };
}

/** The fields of a launcher pod read back from the cluster that a migration target copies. */
export interface LauncherPodJson {
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: {
    containers: { name: string; command?: string[]; resources?: unknown }[];
    volumes?: { persistentVolumeClaim?: { claimName?: string } }[];
  };
}

/**
 * A migration's target pod made from the source's, as virt-controller renders the target from
 * the same VMI: the same QEMU command line (source and target must describe one machine) plus
 * `-incoming`, the migration job's label and annotation, placed on `node`. Only what the source
 * was made from is copied, not what admission added to it (service account volume, priority).
 */
export function migrationTargetPod(
  source: LauncherPodJson,
  target: { name: string; node: string; migration: { uid: string; name: string } },
) {
  const labels = source.metadata.labels ?? {};
  const compute = source.spec.containers.find((c) => c.name === 'compute');
  const claim = source.spec.volumes?.find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim?.claimName;
  const vm = labels[VM_NAME_LABEL];
  const vmiUid = labels[CREATED_BY_LABEL];
  if (!compute?.command || !claim || !vm || !vmiUid)
    throw new Error(
      `${source.metadata.name} is not a launcher pod (no compute container, claim or VM labels)`,
    );
  const pod = launcherPod({
    namespace: source.metadata.namespace ?? '',
    name: target.name,
    vm,
    vmiUid,
    claim,
    node: target.node,
    migration: target.migration,
  });
  const [container] = pod.spec.containers;
  if (container) {
    container.command = [
      ...compute.command.filter(notIncoming()),
      '-incoming',
      `tcp:0.0.0.0:${MIGRATION_PORT}`,
    ];
    if (compute.resources) container.resources = compute.resources as typeof container.resources;
  }
  return pod;
}

/** Drops an `-incoming <uri>` pair (a target's pod copied again for the next migration). */
function notIncoming(): (word: string) => boolean {
  let skipNext = false;
  return (word) => {
    if (skipNext) {
      skipNext = false;
      return false;
    }
    if (word === '-incoming') {
      skipNext = true;
      return false;
    }
    return true;
  };
}
