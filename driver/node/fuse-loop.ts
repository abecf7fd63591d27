/**
 * The block device for kernels without NBD: nbdfuse exposes the export as one file on a FUSE mount
 * under the state directory, and a loop device makes that file a block device.
 *
 * nbdfuse is long-lived and deliberately NOT tied to the process that starts it (no
 * `setpriv --pdeathsig`): restarting the node plugin must never interrupt I/O, so it runs in a
 * session of its own and is found again from /proc/self/mountinfo (its mount carries
 * `tandem-nbdfuse:<volume>` as source) and from `losetup --list`. Nothing about an attachment is
 * kept in memory. In a pod this survives a restart of the plugin process, not of its container
 * (the runtime kills the container's whole cgroup), so in production nbdfuse belongs to a
 * longer-lived owner (the data-plane DaemonSet) or the kernel NBD frontend is used.
 *
 * Growing while attached: nbdfuse fixes the file's size when it connects, so for an engine it is
 * connected to the growable export (`<volume>@growable`, driver/nbd/growable.ts: as large as any
 * volume can become, requests past the volume's current size refused) and the loop device is
 * bounded by `--sizelimit` to the volume's size. After an expansion the limit is raised on the
 * live device (loop-ioctl.ts), and the device grows under a mounted filesystem. An attachment
 * whose loop device has no limit (made before this layout, or of a plain NBD URI) keeps its size
 * until it is detached and attached again.
 */
import { mkdir, readdir, readFile, readlink, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../../lib/exec.js';
import { ensureLoopDirectIo, loopSizeLimit, raiseLoopSizeLimit } from './loop-ioctl.js';
import { type CommandRunner, findMount, mountsOfDevice, unmount } from './mounts.js';

export const FUSE_SUBTYPE = 'fuse.nbdfuse';

export interface FuseLoopPaths {
  volumeId: string;
  /** `<stateDir>/<volumeId>`: everything of one attachment, nothing else. */
  dir: string;
  /** The FUSE mount point; nbdfuse shows the export as `<mountDir>/disk`. */
  mountDir: string;
  file: string;
  pidFile: string;
  logFile: string;
}

export function fuseLoopPaths(stateDir: string, volumeId: string): FuseLoopPaths {
  const dir = join(stateDir, volumeId);
  const mountDir = join(dir, 'fuse');
  return {
    volumeId,
    dir,
    mountDir,
    file: join(mountDir, 'disk'),
    pidFile: join(dir, 'nbdfuse.pid'),
    logFile: join(dir, 'nbdfuse.log'),
  };
}

export const fuseSource = (volumeId: string) => `tandem-nbdfuse:${volumeId}`;

/**
 * Loop devices whose backing file is `file` (several only after a crash between two steps).
 *
 * The path alone does not identify the file: loop devices belong to the kernel, and every node
 * plugin on a kernel (the lab's simulated nodes share one; so would two plugins in containers)
 * names its FUSE file with the same path in its own mount namespace. Another plugin's loop device
 * taken for ours would put this node's reads and writes through that node's engine, its page
 * cache shared, and fail once that node unstages. So a loop device counts when its backing device
 * number (losetup's BACK-MAJ:MIN) is our FUSE mount's (read from mountinfo, which still has it
 * when nbdfuse died). The kernel reports none for a loop over a dead FUSE file: such loops count
 * too unless `strict` — right for cleaning up (ours may be among them), wrong for reusing one.
 */
export async function loopDevicesOf(
  file: string,
  runner: CommandRunner = run,
  strict = false,
): Promise<string[]> {
  // `losetup -j FILE` would stat the file, which fails on a dead FUSE mount (ENOTCONN) — exactly
  // when detaching matters most; the listing reads paths from sysfs and needs no access to it.
  const result = await runner('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,BACK-MAJ:MIN'], {
    timeoutMs: 30_000,
  });
  const mount = await findMount(dirname(file)).catch(() => undefined);
  const ours =
    mount !== undefined
      ? `${mount.major}:${mount.minor}`
      : await stat(file).then(
          (s) => `${major(s.dev)}:${minor(s.dev)}`,
          () => undefined,
        );
  return parseLosetupList(result.stdout)
    .filter((d) => d.backFile === file || d.backFile === `${file} (deleted)`)
    .filter((d) => (ours !== undefined && d.backDevice === ours) || (!strict && d.backDevice === ''))
    .map((d) => d.name);
}

/** The major number of a Linux dev_t (glibc's gnu_dev_major). */
function major(dev: number): number {
  return Number(((BigInt(dev) >> 8n) & 0xfffn) | ((BigInt(dev) >> 32n) & ~0xfffn));
}
function minor(dev: number): number {
  return Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & ~0xffn));
}

export function parseLosetupList(json: string): { name: string; backFile: string; backDevice: string }[] {
  if (json.trim() === '') return []; // no loop devices at all: losetup prints nothing
  const parsed = JSON.parse(json) as {
    loopdevices?: { name?: string; 'back-file'?: string | null; 'back-maj:min'?: string | null }[];
  };
  return (parsed.loopdevices ?? []).map((d) => ({
    name: d.name ?? '',
    backFile: d['back-file'] ?? '',
    // losetup pads the column even in JSON ("       0:315").
    backDevice: (d['back-maj:min'] ?? '').trim(),
  }));
}

/** Whether the FUSE side answers: a mount whose nbdfuse died fails every access with ENOTCONN. */
/** Whether the nbdfuse connection behind the file still answers (a dead FUSE mount fails stat with ENOTCONN). */
export async function fuseAlive(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

async function processAlive(pid: number, mountDir: string): Promise<boolean> {
  try {
    // The pid file may be old: only a process that is nbdfuse for this mount counts.
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return cmdline.some((a) => a.endsWith('nbdfuse')) && cmdline.some((a) => a.startsWith(mountDir));
  } catch {
    return false;
  }
}

async function readPid(pidFile: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(pidFile, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function tail(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim().split('\n').slice(-5).join('\n');
  } catch {
    return '';
  }
}

/**
 * Starts nbdfuse in its own session, with output to a log file in the state directory. `run()`
 * waits for the command's pipes to close, so the daemon must not inherit them: a tiny shell
 * (arguments passed as positional parameters, never interpolated) redirects and backgrounds it.
 */
async function startNbdfuse(paths: FuseLoopPaths, uri: string, runner: CommandRunner): Promise<void> {
  await rm(paths.pidFile, { force: true });
  const script = 'log=$1; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!';
  const args = ['-P', paths.pidFile, '-o', `fsname=${fuseSource(paths.volumeId)}`, '-o', 'subtype=nbdfuse'];
  const started = await runner(
    'sh',
    ['-c', script, 'sh', paths.logFile, 'nbdfuse', ...args, paths.file, uri],
    {
      cwd: '/',
      timeoutMs: 10_000,
    },
  );
  const launched = Number.parseInt(started.stdout.trim(), 10);
  const deadline = Date.now() + 15_000;
  for (;;) {
    // The pid file is written once nbdfuse serves, after the mount exists.
    if ((await readPid(paths.pidFile)) !== undefined && (await findMount(paths.mountDir)) !== undefined)
      return;
    const log = await tail(paths.logFile);
    // `launched` is the daemon itself unless setsid had to fork; a dead one with output failed.
    if (!(await processAlive(launched, paths.mountDir)) && log !== '')
      throw new Error(`nbdfuse for ${paths.volumeId} exited: ${log}`);
    if (Date.now() > deadline)
      throw new Error(`nbdfuse for ${paths.volumeId} not serving after 15 s: ${log}`);
    await sleep(50);
  }
}

/**
 * Why `--direct-io=on`: the loop device then submits to the FUSE file with O_DIRECT, so blocks are
 * not cached a second time in the FUSE file's page cache (the filesystem above already caches),
 * memory stays bounded, and a write leaves the node as soon as the loop device gets it instead of
 * waiting in a cache that nbdfuse dying would lose. And above all: a page cache of the FUSE file
 * would be a cache on this node under every reader, stale once another node writes (a migration's
 * two nodes). The kernel silently falls back to buffered I/O when O_DIRECT is not possible on the
 * backing file, so attachFuseLoop reads `loop/dio` back and refuses a loop device without it.
 */
export const LOSETUP_ARGS = ['--find', '--show', '--direct-io=on'];

/**
 * Attaches (idempotently) nbdfuse for `uri` and a loop device over its file. With `sizeLimit` the
 * loop device is bounded to it from the start (util-linux ≥ 2.36 passes the limit in the same
 * LOOP_CONFIGURE call, so no probe ever sees the larger file), and an existing one with a lower
 * limit is raised to it. Reads near the limit never reach past it with direct I/O; should the
 * kernel fall back to buffered I/O, FUSE readahead past it is refused by the engine (EINVAL in
 * nbdfuse.log) and only the readahead is dropped.
 */
export async function attachFuseLoop(
  paths: FuseLoopPaths,
  uri: string,
  runner: CommandRunner = run,
  sizeLimit?: number,
): Promise<string> {
  const mounted = await findMount(paths.mountDir);
  if (
    mounted !== undefined &&
    (mounted.fsType !== FUSE_SUBTYPE || mounted.source !== fuseSource(paths.volumeId))
  )
    throw new Error(
      `${paths.mountDir} has ${mounted.source} (${mounted.fsType}) mounted, not this volume's nbdfuse`,
    );
  if (mounted !== undefined && !(await fuseAlive(paths.file))) {
    const loops = await loopDevicesOf(paths.file, runner);
    const users = (await Promise.all(loops.map((loop) => mountsOfDevice(loop).catch(() => [])))).flat();
    if (users.length > 0)
      throw new Error(
        `nbdfuse of ${paths.volumeId} is gone (its engine restarted) while ${loops.join(', ')} is still mounted at ${users.map((u) => u.mountPoint).join(', ')}; unstage the volume (restart its pods) to reattach`,
      );
    // The engine went away under an attachment nobody mounted (a stage interrupted by a data-plane
    // restart): loops and the dead FUSE mount are detached, and the attach starts afresh.
    await detachFuseLoop(paths, runner);
  } else if (mounted !== undefined && (await loopDevicesOf(paths.file, runner, true)).length === 0) {
    // Alive but unused (a crash between nbdfuse and losetup): it may be connected to another
    // export or have an older size, and only a loop device ever uses it, so start afresh too.
    await stopNbdfuse(paths, runner);
  }
  if ((await findMount(paths.mountDir)) === undefined) {
    await mkdir(paths.mountDir, { recursive: true });
    await startNbdfuse(paths, uri, runner);
  }
  const existing = await loopDevicesOf(paths.file, runner, true);
  if (existing[0] !== undefined) {
    if (sizeLimit !== undefined) await raiseIfLimited(existing[0], sizeLimit, runner);
    await ensureLoopDirectIo(existing[0], runner);
    return existing[0];
  }
  const limit = sizeLimit === undefined ? [] : ['--sizelimit', String(sizeLimit)];
  const created = await runner('losetup', [...LOSETUP_ARGS, ...limit, paths.file], { timeoutMs: 30_000 });
  const loop = created.stdout.trim();
  try {
    await ensureLoopDirectIo(loop, runner);
  } catch (err) {
    await runner('losetup', ['-d', loop], { timeoutMs: 30_000, allowFailure: true });
    throw err;
  }
  return loop;
}

/**
 * Raises a loop device's size limit to `sizeLimit` when it has a lower one; one without a limit
 * (the older layout) is left alone. The limit afterwards (0 for none).
 */
export async function raiseIfLimited(
  loop: string,
  sizeLimit: number,
  runner: CommandRunner = run,
): Promise<number> {
  const current = await loopSizeLimit(loop);
  if (current === undefined) throw new Error(`${loop} is not a loop device`);
  if (current === 0 || current >= sizeLimit) return current;
  return (await raiseLoopSizeLimit(loop, sizeLimit, runner)).sizeLimit;
}

/** How long nbdfuse gets to exit by itself once its mount is gone, and after SIGTERM. */
const NBDFUSE_EXIT_MS = 3_000;

/**
 * Unmounts nbdfuse's file system and makes sure nbdfuse is gone. nbdfuse exits when the kernel
 * ends its FUSE connection, which happens when the *last* mount of it goes — and a mount
 * namespace created while the mount existed holds a private copy of it (a container started
 * then, a process that unshared its mounts), so the unmount here may leave the connection, and
 * nbdfuse, alive for as long as that namespace lives. By then nothing can use it (the loop
 * devices are detached, and a copy elsewhere answers only to that namespace's processes), so
 * after a short wait nbdfuse is told to stop (SIGTERM, then SIGKILL), and the holders are named in
 * the log. Waiting for the copy to go instead made the kubelet's first unstage after a migration
 * depend on timing.
 */
async function stopNbdfuse(
  paths: FuseLoopPaths,
  runner: CommandRunner,
  log: (message: string) => void = (message) => process.stderr.write(`${message}\n`),
): Promise<void> {
  const pid = await readPid(paths.pidFile);
  await unmount(paths.mountDir, { runner });
  if (pid === undefined) return;
  const gone = async () => !(await processAlive(pid, paths.mountDir));
  const exited = (timeoutMs: number) =>
    waitFor(`nbdfuse ${pid} to exit`, gone, timeoutMs).then(
      () => true,
      () => false,
    );
  if (await exited(NBDFUSE_EXIT_MS)) return;
  const holders = await mountHolders(fuseSource(paths.volumeId));
  log(
    `nbdfuse ${pid} of ${paths.volumeId} did not exit after its unmount: its FUSE mount is still held by ` +
      `${holders.length > 0 ? holders.join(', ') : 'a mount namespace outside this PID namespace'}; stopping it`,
  );
  signal(pid, 'SIGTERM');
  if (await exited(NBDFUSE_EXIT_MS)) return;
  signal(pid, 'SIGKILL');
  await waitFor(`nbdfuse ${pid} to exit after SIGKILL`, gone);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Processes (`pid (comm)`) whose mount namespace still has a mount with this source, one per namespace. */
export async function mountHolders(source: string, procRoot = '/proc'): Promise<string[]> {
  const seen = new Set<string>();
  const holders: string[] = [];
  for (const entry of await readdir(procRoot).catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const namespace = await readlink(join(procRoot, entry, 'ns', 'mnt')).catch(() => undefined);
    if (namespace === undefined || seen.has(namespace)) continue;
    const mountinfo = await readFile(join(procRoot, entry, 'mountinfo'), 'utf8').catch(() => '');
    seen.add(namespace);
    if (!mountinfo.split('\n').some((line) => line.split(' - ')[1]?.split(' ')[1] === source)) continue;
    const comm = (await readFile(join(procRoot, entry, 'comm'), 'utf8').catch(() => '?')).trim();
    holders.push(`${entry} (${comm}, ${namespace})`);
  }
  return holders;
}

/** Undoes attachFuseLoop from whatever state is left; refuses while a loop device is mounted. */
export async function detachFuseLoop(paths: FuseLoopPaths, runner: CommandRunner = run): Promise<void> {
  for (const loop of await loopDevicesOf(paths.file, runner)) {
    const users = await mountsOfDevice(loop).catch(() => []);
    if (users.length > 0)
      throw new Error(
        `${loop} (${paths.volumeId}) is still mounted at ${users.map((u) => u.mountPoint).join(', ')}`,
      );
    await runner('losetup', ['-d', loop], { timeoutMs: 30_000 });
  }
  // A loop device that is still open somewhere (a probe, a late reader) is only marked for
  // autoclear by `losetup -d`; wait for it to let go of the file before unmounting under it.
  await waitFor(
    `loop devices of ${paths.volumeId} to go`,
    async () => (await loopDevicesOf(paths.file, runner)).length === 0,
  );
  // nbdfuse exits by itself once unmounted; wait so that nothing of the volume outlives detach.
  await stopNbdfuse(paths, runner);
  await rm(paths.pidFile, { force: true });
  await rm(paths.logFile, { force: true });
  // rmdir, not a recursive rm: if anything is still mounted there, this fails instead of deleting through it.
  await removeDir(paths.mountDir);
  await removeDir(paths.dir);
}

async function removeDir(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
