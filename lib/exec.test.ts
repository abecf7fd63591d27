import { CommandError, run } from './exec.js';

describe('run', () => {
  it('returns stdout, stderr and the exit code', async () => {
    const result = await run('sh', ['-c', 'echo out; echo err >&2']);
    expect(result).toEqual({ code: 0, stdout: 'out\n', stderr: 'err\n' });
  });

  it('feeds standard input', async () => {
    expect((await run('cat', [], { input: 'hello' })).stdout).toBe('hello');
  });

  it('throws a CommandError with the exit code and the stderr tail, secrets hidden', async () => {
    const failure = run('sh', ['-c', 'echo "bad key topsecret" >&2; exit 3', '--token', 'topsecret'], {
      secrets: ['topsecret'],
    });
    await expect(failure).rejects.toBeInstanceOf(CommandError);
    await expect(failure).rejects.toMatchObject({ code: 3, timedOut: false });
    const message = await failure.catch((e: Error) => e.message);
    expect(message).toContain('exited with code 3');
    expect(message).toContain('bad key [redacted]');
    expect(message).not.toContain('topsecret');
  });

  it('resolves non-zero exits when failure is allowed', async () => {
    expect((await run('sh', ['-c', 'exit 4'], { allowFailure: true })).code).toBe(4);
  });

  it('kills a command that outlives its timeout', async () => {
    const started = Date.now();
    await expect(run('sleep', ['30'], { timeoutMs: 200 })).rejects.toMatchObject({ timedOut: true });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('reports a command that cannot start', async () => {
    await expect(run('/nonexistent/tool', [])).rejects.toThrow(/cannot start/);
  });

  it('never goes through a shell', async () => {
    expect((await run('echo', ['$HOME', '`id`'])).stdout).toBe('$HOME `id`\n');
  });
});
