import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from '../../lib/exec.js';
import {
  bindMount,
  type CommandRunner,
  parseMountInfo,
  splitDeviceNumber,
  unescapeMountField,
} from './mounts.js';

const SAMPLE = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro',
  '61 22 0:42 / /var/lib/tandem/pvc-1/fuse rw,nosuid,nodev,relatime - fuse.nbdfuse tandem-nbdfuse:pvc-1 rw,user_id=0,group_id=0',
  '70 22 7:3 /sub /mnt/with\\040space\\011tab rw master:4 shared:7 - ext4 /dev/loop3 rw',
  '71 22 0:50 / /odd\\134name ro - tmpfs none ro',
].join('\n');

function fakeRunner(calls: [string, readonly string[]][]): CommandRunner {
  return async (command, args): Promise<RunResult> => {
    calls.push([command, args]);
    return { code: 0, stdout: '', stderr: '' };
  };
}

describe('mountinfo', () => {
  it('parses fields around a variable number of optional fields', () => {
    const entries = parseMountInfo(SAMPLE);
    expect(entries).toHaveLength(4);
    expect(entries[1]).toMatchObject({
      id: 61,
      parentId: 22,
      major: 0,
      minor: 42,
      mountPoint: '/var/lib/tandem/pvc-1/fuse',
      fsType: 'fuse.nbdfuse',
      source: 'tandem-nbdfuse:pvc-1',
    });
    expect(entries[2]).toMatchObject({
      root: '/sub',
      mountPoint: '/mnt/with space\ttab',
      fsType: 'ext4',
      major: 7,
    });
    expect(entries[3]?.mountPoint).toBe('/odd\\name');
    expect(entries[3]?.options).toEqual(['ro']);
  });

  it('unescapes octal sequences only', () => {
    expect(unescapeMountField('a\\040b\\012c\\134d\\x')).toBe('a b\nc\\d\\x');
  });

  it('rejects a line without the separator', () => {
    expect(() => parseMountInfo('1 2 3:4 / /x rw shared:1 ext4 /dev/x rw')).toThrow(/malformed/);
  });

  it('splits device numbers like glibc', () => {
    expect(splitDeviceNumber(0x0703n)).toEqual({ major: 7, minor: 3 });
    expect(splitDeviceNumber(0x1000_0000_0b01n)).toEqual({ major: 0x100b, minor: 1 });
    expect(splitDeviceNumber(0x1_0000_0b01n)).toEqual({ major: 0x0b, minor: 0x100001 });
    expect(splitDeviceNumber(0x12_3456n)).toEqual({ major: 0x234, minor: 0x156 });
  });
});

describe('bindMount', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-mounts-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('binds, then remounts read-only (the bind itself ignores ro)', async () => {
    const calls: [string, readonly string[]][] = [];
    const target = join(dir, 'target');
    await bindMount(dir, target, true, { runner: fakeRunner(calls) });
    expect(calls).toEqual([
      ['mount', ['--bind', dir, target]],
      ['mount', ['-o', 'remount,bind,ro', target]],
    ]);
  });

  it('creates a file as the target for a block device (a file source)', async () => {
    const calls: [string, readonly string[]][] = [];
    const source = join(dir, 'dev');
    await writeFile(source, '');
    const target = join(dir, 'pods', 'x', 'volume');
    await bindMount(source, target, false, { runner: fakeRunner(calls) });
    expect(calls).toEqual([['mount', ['--bind', source, target]]]);
  });
});
