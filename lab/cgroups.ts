/**
 * A real node's cgroup tree on this cgroup v1 host (see ../shared/notes/real-kubelet.md): the
 * kubelet's cgroupRoot, created in every v1 hierarchy (the kubelet refuses a root that does not
 * exist), and a `runtime` child in the pids hierarchy that containerd, the kubelet, kube-proxy
 * and the mount-namespace holder are moved into before they start. containerd's shims inherit it
 * and the pods live under the same root, so one walk of the pids hierarchy finds every process of
 * the node: teardown (and the sweeper, after a SIGKILL) kills exactly those and nothing else.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, rmdirSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const CGROUP_MOUNT = '/sys/fs/cgroup';
/** Hierarchies that are not v1 controllers the kubelet uses (the v2 mount, systemd's is named). */
const SKIPPED = new Set(['unified']);

/** Absolute paths of each distinct v1 hierarchy (cpu and cpuacct are often one, via links). */
export function v1Hierarchies(): string[] {
  const seen = new Set<string>();
  for (const entry of readdirSync(CGROUP_MOUNT)) {
    if (SKIPPED.has(entry)) continue;
    const path = join(CGROUP_MOUNT, entry);
    try {
      if (!statSync(path).isDirectory() || !existsSync(join(path, 'cgroup.procs'))) continue;
      seen.add(realpathSync(path));
    } catch {
      // vanished or unreadable: not a hierarchy we can use
    }
  }
  return [...seen].sort();
}

/** The pids-hierarchy folder of a cgroup path such as /tandem-ab12-node-1/runtime. */
export function pidsCgroup(cgroupPath: string): string {
  return join(CGROUP_MOUNT, 'pids', cgroupPath);
}

/** Creates `root` (and root/runtime in pids) in every hierarchy; cpuset gets its parent's CPUs and memory nodes. */
export async function createNodeCgroups(root: string): Promise<void> {
  for (const hierarchy of v1Hierarchies()) {
    const dir = join(hierarchy, root);
    await mkdir(dir, { recursive: true });
    if (existsSync(join(dir, 'cpuset.cpus'))) {
      // A new cpuset cgroup starts empty and no process may join it until both are set.
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        const parent = (await readFile(join(hierarchy, file), 'utf8')).trim();
        await writeFile(join(dir, file), parent);
      }
    }
  }
  await mkdir(pidsCgroup(join(root, 'runtime')), { recursive: true });
}

/** A cgroup folder and every folder below it, children before their parents (absent: none). */
function cgroupTree(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  const below: string[] = [];
  for (const entry of entries) {
    const child = join(dir, entry);
    try {
      if (statSync(child).isDirectory()) below.push(...cgroupTree(child));
    } catch {
      // removed meanwhile
    }
  }
  return [...below, dir];
}

/** Every pid in the node's pids tree, deepest cgroups included. */
export function nodeProcesses(root: string): number[] {
  const pids = new Set<number>();
  for (const dir of cgroupTree(pidsCgroup(root))) {
    try {
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        const pid = Number(line);
        if (pid > 0) pids.add(pid);
      }
    } catch {
      // removed meanwhile
    }
  }
  return [...pids];
}

/** One round of SIGKILL to every process of the node; returns the pids it found (empty: none left). */
const FUSE_DAEMONS = new Set(['nbdfuse']);

function commandName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function killRound(root: string, only?: ReadonlySet<string>): number[] {
  const found = nodeProcesses(root).filter((pid) => only === undefined || only.has(commandName(pid)));
  for (const pid of found) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  return found;
}

/**
 * SIGKILLs every process of the node until none is left (a dying shim can fork, a container can
 * be mid-start) or `timeoutMs` passes; returns the pids still alive (empty when done).
 */
export async function killNodeProcesses(root: string, timeoutMs = 20_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  // FUSE daemons first, while other processes still hold the node's mount namespace. Were an
  // nbdfuse the last process in it, its own exit would unmount the filesystem on the loop device
  // over its FUSE file, and that unmount's flush waits for nbdfuse itself: a thread stuck in D
  // state for good (seen in CI). Killed first, its connection aborts and the flush fails fast.
  const fuseDeadline = Date.now() + 5_000;
  while (killRound(root, FUSE_DAEMONS).length > 0 && Date.now() <= fuseDeadline)
    await new Promise((r) => setTimeout(r, 100));
  while (killRound(root).length > 0 && Date.now() <= deadline) await new Promise((r) => setTimeout(r, 100));
  return nodeProcesses(root);
}

/**
 * What a process that outlived SIGKILL is doing: its name, state and kernel wait channel (a
 * process in D state waits in the kernel, typically on I/O to a device whose server is gone).
 */
export function describeProcess(pid: number): string {
  const read = (file: string) => {
    try {
      return readFileSync(`/proc/${pid}/${file}`, 'utf8').trim();
    } catch {
      return '?';
    }
  };
  const state = /^State:\s*(.*)$/m.exec(read('status'))?.[1] ?? '?';
  return `${pid} (${read('comm')}, ${state}, waiting in ${read('wchan') || 'user space'})`;
}

/** Removes the node's cgroups in every hierarchy, children first; returns the ones that stayed. */
export function removeNodeCgroups(root: string): string[] {
  const left: string[] = [];
  // runc also mirrors each container's cgroup into systemd's v2 mount (`unified`) on a hybrid host.
  for (const hierarchy of [...v1Hierarchies(), join(CGROUP_MOUNT, 'unified')]) {
    for (const dir of cgroupTree(join(hierarchy, root))) {
      try {
        rmdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
      }
    }
  }
  return left;
}

/** killNodeProcesses for synchronous exit handlers and the sweeper, where nothing async runs. */
export function killNodeProcessesSync(root: string, timeoutMs = 10_000): number[] {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const fuseDeadline = Date.now() + 5_000; // FUSE daemons first: see killNodeProcesses
  while (killRound(root, FUSE_DAEMONS).length > 0 && Date.now() <= fuseDeadline)
    Atomics.wait(pause, 0, 0, 100);
  while (killRound(root).length > 0 && Date.now() <= deadline) Atomics.wait(pause, 0, 0, 100);
  return nodeProcesses(root);
}
