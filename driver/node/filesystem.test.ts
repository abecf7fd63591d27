import type { RunOptions, RunResult } from '../../lib/exec.js';
import { ensureFilesystem, FilesystemMismatchError, mkfsCommand, parseBlkidExport } from './filesystem.js';
import type { CommandRunner } from './mounts.js';

/** A runner whose blkid answers with `blkid`; records every command. */
function runner(blkid: RunResult, calls: string[]): CommandRunner {
  return async (command: string, args: readonly string[], options?: RunOptions): Promise<RunResult> => {
    calls.push([command, ...args].join(' '));
    if (command === 'blkid') {
      if (blkid.code !== 0 && !options?.allowFailure) throw new Error('blkid failed');
      return blkid;
    }
    return { code: 0, stdout: '', stderr: '' };
  };
}

const found = (stdout: string): RunResult => ({ code: 0, stdout, stderr: '' });

describe('ensureFilesystem', () => {
  it('formats a device without any signature (blkid exit 2), with the no-discard options', async () => {
    const calls: string[] = [];
    const r = await ensureFilesystem(
      '/dev/loop7',
      'ext4',
      runner({ code: 2, stdout: '', stderr: '' }, calls),
    );
    expect(r).toEqual({ formatted: true });
    expect(calls).toEqual([
      'blkid -p -o export /dev/loop7',
      'mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 /dev/loop7',
    ]);
  });

  it('formats xfs with -K', () => {
    expect(mkfsCommand('/dev/loop1', 'xfs')).toEqual(['mkfs.xfs', ['-q', '-K', '/dev/loop1']]);
  });

  it('leaves a device with the asked filesystem alone', async () => {
    const calls: string[] = [];
    const out = 'DEVNAME=/dev/loop7\nUUID=1234\nVERSION=1.0\nTYPE=ext4\nUSAGE=filesystem\n';
    expect(await ensureFilesystem('/dev/loop7', 'ext4', runner(found(out), calls))).toEqual({
      formatted: false,
    });
    expect(calls).toHaveLength(1);
  });

  it.each([
    ['another filesystem', 'TYPE=xfs\nUSAGE=filesystem\n', /holds xfs, not ext4/],
    ['a partition table', 'PTUUID=abcd\nPTTYPE=dos\n', /dos partition table/],
    ['LVM', 'TYPE=LVM2_member\nUSAGE=raid\n', /LVM2_member/],
    ['an unnamed signature', 'USAGE=other\n', /holds other/],
  ])('refuses %s and never runs mkfs', async (_, out, message) => {
    const calls: string[] = [];
    const attempt = ensureFilesystem('/dev/loop7', 'ext4', runner(found(out), calls));
    await expect(attempt).rejects.toBeInstanceOf(FilesystemMismatchError);
    await expect(attempt).rejects.toThrow(message);
    expect(calls.some((c) => c.startsWith('mkfs'))).toBe(false);
  });

  it('fails (does not format) when blkid itself fails', async () => {
    const calls: string[] = [];
    const attempt = ensureFilesystem(
      '/dev/loop7',
      'xfs',
      runner({ code: 4, stdout: '', stderr: 'bad' }, calls),
    );
    await expect(attempt).rejects.toThrow(/exited with code 4/);
    expect(calls).toHaveLength(1);
  });

  it('parses escaped values', () => {
    expect(parseBlkidExport('LABEL=my\\ disk\nTYPE=ext4\n').get('LABEL')).toBe('my disk');
  });
});
