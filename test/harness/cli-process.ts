import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../lib/paths.js';

/**
 * How to start the tandem CLI: the compiled entry when this process runs from dist/ (the lab),
 * the TypeScript sources through tsx otherwise (tests).
 */
export function tandemEntry(): string[] {
  const main = process.argv[1] ?? '';
  if (/[/\\]dist[/\\]cli[/\\]main\.js$/.test(main)) return [main];
  return ['--import', 'tsx', join(packageRoot(), 'cli', 'main.ts')];
}

/** The tandem CLI as a real child process (from its TypeScript sources through tsx under jest). */
export function spawnTandem(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [...tandemEntry(), ...args], {
    cwd: packageRoot(),
    env: { ...process.env, ...env },
  });
}

/** Resolves with everything printed so far once stdout contains `marker`; rejects on exit or timeout. */
export function waitForOutput(
  child: ChildProcessWithoutNullStreams,
  marker: string,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(
      () => reject(new Error(`no "${marker}" within ${timeoutMs} ms; stdout:\n${out}\nstderr:\n${err}`)),
      timeoutMs,
    );
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      if (out.includes(marker)) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before "${marker}"; stdout:\n${out}\nstderr:\n${err}`));
    });
  });
}

export function exitOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}
