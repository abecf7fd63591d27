import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError, type RunResult } from '../../lib/exec.js';
import type { MountEntry } from './mounts.js';
import { mountNfs, nfsSource } from './nfs-mount.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tandem-nfs-mount-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A mount command that refuses any -o containing one of `refused`, with mount.nfs's words. */
function mountCommand(refused: string[], words = 'mount.nfs: an incorrect mount option was specified') {
  const calls: string[][] = [];
  const runner = async (command: string, args: readonly string[]): Promise<RunResult> => {
    calls.push([command, ...args]);
    const options = (args[args.indexOf('-o') + 1] ?? '').split(',');
    if (refused.some((r) => options.includes(r)))
      throw new CommandError(`mount exited with code 32: ${words}`, 'mount', 32, words, false);
    return { code: 0, stdout: '', stderr: '' };
  };
  return { calls, runner: runner as never };
}

const noMounts = async (): Promise<MountEntry[]> => [];

test('mounts the Service address with the class options as given', async () => {
  const { calls, runner } = mountCommand([]);
  const target = join(dir, 'staging');
  const result = await mountNfs('10.96.0.12', target, 'vers=4.1,noresvport,softerr,timeo=600,retrans=5', {
    runner,
    mounts: noMounts,
  });
  expect(result).toEqual({
    options: 'vers=4.1,noresvport,softerr,timeo=600,retrans=5',
    softerrReplaced: false,
  });
  expect(calls).toEqual([
    ['mount', '-t', 'nfs4', '-o', 'vers=4.1,noresvport,softerr,timeo=600,retrans=5', '10.96.0.12:/', target],
  ]);
});

test('a kernel without softerr: tried once more with soft, and only softerr replaced', async () => {
  const { calls, runner } = mountCommand(['softerr']);
  const result = await mountNfs('10.96.0.12', join(dir, 's'), 'vers=4.1,softerr,timeo=600', {
    runner,
    mounts: noMounts,
  });
  expect(result).toEqual({ options: 'vers=4.1,soft,timeo=600', softerrReplaced: true });
  expect(calls).toHaveLength(2);
});

test("any other refusal is reported in the mount's words, without a retry", async () => {
  const { calls, runner } = mountCommand(['rsize=1'], 'mount.nfs: Connection refused');
  await expect(
    mountNfs('10.96.0.12', join(dir, 's'), 'vers=4.1,softerr,rsize=1', { runner, mounts: noMounts }),
  ).rejects.toThrow(/refused: mount.nfs: Connection refused$/);
  expect(calls).toHaveLength(1);
});

test('when soft is refused too, both answers are reported', async () => {
  const { runner } = mountCommand(['softerr', 'timeo=600']);
  await expect(
    mountNfs('10.96.0.12', join(dir, 's'), 'vers=4.1,softerr,timeo=600', { runner, mounts: noMounts }),
  ).rejects.toThrow(
    /incorrect mount option was specified; with soft in place of softerr too: mount.nfs: an incorrect/,
  );
});

test('idempotent: the same export already mounted there is left alone; something else is an error', async () => {
  const { calls, runner } = mountCommand([]);
  const target = join(dir, 'staging');
  const entry = (source: string, fsType: string): MountEntry => ({
    id: 1,
    parentId: 0,
    major: 0,
    minor: 50,
    root: '/',
    mountPoint: target,
    options: ['rw', 'relatime'],
    fsType,
    source,
    superOptions: [],
  });
  await mountNfs('10.96.0.12', target, 'vers=4.1', {
    runner,
    mounts: async () => [entry('10.96.0.12:/', 'nfs4')],
  });
  expect(calls).toEqual([]);
  await expect(
    mountNfs('10.96.0.12', target, 'vers=4.1', { runner, mounts: async () => [entry('/dev/loop3', 'ext4')] }),
  ).rejects.toThrow(/already has \/dev\/loop3 \(ext4\) mounted/);
});

test('IPv6 servers are bracketed', () => {
  expect(nfsSource('fd00::12')).toBe('[fd00::12]:/');
  expect(nfsSource('198.18.0.12')).toBe('198.18.0.12:/');
});
