import type { RunOptions, RunResult } from '../../lib/exec.js';
import { ensureLoopDirectIo, loopDirectIo } from './loop-ioctl.js';

/** A sysfs with one loop device whose dio attribute `losetup --direct-io=on` may or may not set. */
function fakeLoop(initial: '0' | '1', losetupSets: boolean) {
  let dio: string = initial;
  const calls: string[][] = [];
  const read = async (path: string) => {
    if (path !== '/sys/block/loop7/loop/dio') throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    return `${dio}\n`;
  };
  const runner = async (
    command: string,
    args: readonly string[],
    _options?: RunOptions,
  ): Promise<RunResult> => {
    calls.push([command, ...args]);
    if (losetupSets) dio = '1';
    return { code: 0, stdout: '', stderr: '' };
  };
  return { read, runner, calls };
}

describe('loop direct I/O', () => {
  it('reads dio from sysfs, undefined for no loop device', async () => {
    const { read } = fakeLoop('1', false);
    expect(await loopDirectIo('/dev/loop7', read)).toBe(true);
    expect(await loopDirectIo('/dev/loop8', read)).toBeUndefined();
  });

  it('accepts a loop device that runs with direct I/O without running anything', async () => {
    const { read, runner, calls } = fakeLoop('1', false);
    await ensureLoopDirectIo('/dev/loop7', runner, read);
    expect(calls).toEqual([]);
  });

  it('asks again once when the kernel kept buffered I/O, and accepts when that worked', async () => {
    const { read, runner, calls } = fakeLoop('0', true);
    await ensureLoopDirectIo('/dev/loop7', runner, read);
    expect(calls).toEqual([['losetup', '--direct-io=on', '/dev/loop7']]);
  });

  it('refuses a loop device that stays buffered, saying why it matters', async () => {
    const { read, runner } = fakeLoop('0', false);
    await expect(ensureLoopDirectIo('/dev/loop7', runner, read)).rejects.toThrow(
      /runs \/dev\/loop7 with buffered I\/O .*miss what another node wrote/,
    );
  });

  it('refuses something that is not a loop device', async () => {
    const { read, runner } = fakeLoop('1', false);
    await expect(ensureLoopDirectIo('/dev/loop8', runner, read)).rejects.toThrow(/not a loop device/);
  });
});
