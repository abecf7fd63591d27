/**
 * The NBD relay of one attachment (issue 16): `tandem nbd-relay` between nbdfuse and the engine's
 * socket, so a restart of the data plane (and of the engine in it) pauses the volume's I/O
 * instead of failing it — nbdfuse stays connected to the relay, which reconnects to the engine
 * the restarted data plane starts at the same socket and sends again what had no answer
 * (driver/nbd/relay-device.ts). Like nbdfuse it runs in a session of its own, not tied to the
 * node plugin process, and is found again from its pid file; it is stopped after nbdfuse when the
 * attachment is detached.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../../lib/paths.js';
import { canConnect } from '../../lib/readiness.js';
import type { CommandRunner } from './mounts.js';

export interface RelayPaths {
  socket: string;
  pidFile: string;
  logFile: string;
}

export function relayPaths(dir: string): RelayPaths {
  return {
    socket: join(dir, 'relay.sock'),
    pidFile: join(dir, 'relay.pid'),
    logFile: join(dir, 'relay.log'),
  };
}

/** How this build runs its own CLI: the compiled entry in an image, the sources through tsx otherwise. */
export function tandemCli(): string[] {
  const root = packageRoot();
  return fileURLToPath(import.meta.url).includes('/dist/')
    ? [process.execPath, join(root, 'dist', 'cli', 'main.js')]
    : [process.execPath, '--import', 'tsx', join(root, 'cli', 'main.ts')];
}

/** The relay's pid when a relay for this socket runs; its pid file may be stale. */
async function runningRelay(paths: RelayPaths): Promise<number | undefined> {
  const pid = Number.parseInt((await readFile(paths.pidFile, 'utf8').catch(() => '')).trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  return cmdline.includes('nbd-relay') && cmdline.includes(paths.socket) ? pid : undefined;
}

async function tail(file: string): Promise<string> {
  return (await readFile(file, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join('\n');
}

/** Starts the relay for `exportName` on `upstream` unless one already serves `paths.socket`. */
export async function ensureRelay(
  paths: RelayPaths,
  upstream: string,
  exportName: string,
  runner: CommandRunner,
): Promise<void> {
  if ((await runningRelay(paths)) !== undefined && (await canConnect({ path: paths.socket }))) return;
  await stopRelay(paths);
  // As nbdfuse (fuse-loop.ts): a tiny shell backgrounds it in its own session with its output in
  // a log file, so `run()` does not wait for it; arguments are positional, never interpolated.
  const script = 'log=$1; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!';
  const [command = process.execPath, ...args] = tandemCli();
  const started = await runner(
    'sh',
    [
      '-c',
      script,
      'sh',
      paths.logFile,
      command,
      ...args,
      'nbd-relay',
      '--upstream',
      upstream,
      '--export',
      exportName,
      '--listen',
      paths.socket,
    ],
    { cwd: packageRoot(), timeoutMs: 10_000 },
  );
  const pid = Number.parseInt(started.stdout.trim(), 10);
  await rm(paths.pidFile, { force: true });
  await writeFile(paths.pidFile, `${pid}\n`);
  const deadline = Date.now() + 30_000;
  while (!(await canConnect({ path: paths.socket }))) {
    if ((await runningRelay(paths)) === undefined && (await tail(paths.logFile)) !== '')
      throw new Error(`the NBD relay for ${exportName} exited: ${await tail(paths.logFile)}`);
    if (Date.now() > deadline)
      throw new Error(`the NBD relay for ${exportName} not serving after 30 s: ${await tail(paths.logFile)}`);
    await sleep(50);
  }
}

/** Stops the relay (SIGTERM, then SIGKILL) and removes its files; fine when none runs. */
export async function stopRelay(paths: RelayPaths): Promise<void> {
  const pid = await runningRelay(paths);
  if (pid !== undefined) {
    signal(pid, 'SIGTERM');
    const deadline = Date.now() + 5_000;
    while ((await runningRelay(paths)) !== undefined) {
      if (Date.now() > deadline) {
        signal(pid, 'SIGKILL');
        await sleep(100);
        break;
      }
      await sleep(50);
    }
  }
  for (const file of [paths.socket, paths.pidFile, paths.logFile]) await rm(file, { force: true });
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
