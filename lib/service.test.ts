import { spawn } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Service } from './service.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('Service', () => {
  it('writes output to its log file and stops on SIGTERM', async () => {
    const log = join(await mkdtemp(join(tmpdir(), 'svc-')), 'out.log');
    const service = new Service({
      name: 'echo',
      command: 'sh',
      args: ['-c', 'echo started; exec sleep 60'],
      logFile: log,
    });
    for (let i = 0; i < 50 && !(await readFile(log, 'utf8')).includes('started'); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await readFile(log, 'utf8')).toContain('started');
    expect(service.running).toBe(true);
    const exit = await service.stop();
    expect(exit.signal).toBe('SIGTERM');
    expect(service.running).toBe(false);
  });

  it('escalates to SIGKILL when SIGTERM is ignored', async () => {
    const service = new Service({
      name: 'stubborn',
      command: 'sh',
      args: ['-c', 'trap "" TERM; exec sleep 60'],
      stopGraceMs: 200,
    });
    await new Promise((r) => setTimeout(r, 100));
    expect((await service.stop()).signal).toBe('SIGKILL');
  });

  it('dies with the process that started it, even when that process is SIGKILLed', async () => {
    // A parent node process starts a Service and prints the service's pid; we SIGKILL the parent.
    const script = `
      const { Service } = await import(${JSON.stringify(new URL('./service.ts', import.meta.url).href)});
      const s = new Service({ name: 'orphan', command: 'sleep', args: ['60'] });
      console.log(s.pid); setInterval(() => {}, 1000);`;
    const parent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const childPid = await new Promise<number>((resolve, reject) => {
      parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
      parent.once('exit', () => reject(new Error('parent exited before starting the service')));
    });
    expect(childPid).toBeGreaterThan(1);
    expect(alive(childPid)).toBe(true);
    const parentGone = new Promise((r) => parent.once('exit', r));
    parent.kill('SIGKILL');
    await parentGone;
    for (let i = 0; i < 100 && alive(childPid); i++) await new Promise((r) => setTimeout(r, 20));
    expect(alive(childPid)).toBe(false);
  });
});
