import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loopDevicesOf, mountHolders } from './fuse-loop.js';

describe('mountHolders', () => {
  let proc: string;
  beforeEach(async () => {
    proc = await mkdtemp(join(tmpdir(), 'tandem-proc-'));
  });
  afterEach(() => rm(proc, { recursive: true, force: true }));

  async function processEntry(pid: number, namespace: string, comm: string, sources: string[]) {
    const dir = join(proc, String(pid));
    await mkdir(join(dir, 'ns'), { recursive: true });
    await symlink(namespace, join(dir, 'ns', 'mnt'));
    await writeFile(join(dir, 'comm'), `${comm}\n`);
    const lines = sources.map(
      (source, i) => `${30 + i} 1 0:${50 + i} / /m${i} rw,relatime shared:1 - fuse.nbdfuse ${source} rw`,
    );
    await writeFile(join(dir, 'mountinfo'), `${lines.join('\n')}\n`);
  }

  it('names one process per mount namespace that still has the mount, by its exact source', async () => {
    await processEntry(10, 'mnt:[4026531841]', 'tandem', ['tandem-nbdfuse:vol-a']);
    await processEntry(11, 'mnt:[4026531841]', 'tandem', ['tandem-nbdfuse:vol-a']);
    await processEntry(20, 'mnt:[4026532000]', 'qemu-system-x86', [
      'tandem-nbdfuse:vol-a2',
      'tandem-nbdfuse:vol-b',
    ]);
    await processEntry(30, 'mnt:[4026532001]', 'sleep', []);
    await writeFile(join(proc, 'self'), '');
    expect(await mountHolders('tandem-nbdfuse:vol-a', proc)).toEqual(['10 (tandem, mnt:[4026531841])']);
    expect(await mountHolders('tandem-nbdfuse:vol-b', proc)).toEqual([
      '20 (qemu-system-x86, mnt:[4026532000])',
    ]);
    expect(await mountHolders('tandem-nbdfuse:vol-c', proc)).toEqual([]);
  });
});

describe('loopDevicesOf', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-loops-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const listing = (devices: { name: string; file: string; dev: string | null }[]) => async () => ({
    code: 0,
    stderr: '',
    stdout: JSON.stringify({
      loopdevices: devices.map((d) => ({ name: d.name, 'back-file': d.file, 'back-maj:min': d.dev })),
    }),
  });

  it("takes only loop devices over this FUSE file, not another node's with the same path", async () => {
    const file = join(dir, 'disk');
    await writeFile(file, '');
    const { dev } = await stat(file);
    const ours = `${Math.floor(dev / 256) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & ~0xff)}`;
    const runner = listing([
      { name: '/dev/loop3', file, dev: '0:999' }, // another node's plugin, same path
      { name: '/dev/loop4', file, dev: `       ${ours}  ` }, // padded, as losetup prints it
      { name: '/dev/loop5', file, dev: null }, // over a dead FUSE file: not ours while ours answers
      { name: '/dev/loop6', file: `${file}.other`, dev: ours },
    ]);
    // Cleaning up also takes the loop over a dead FUSE file; reusing one takes only ours.
    expect(await loopDevicesOf(file, runner)).toEqual(['/dev/loop4', '/dev/loop5']);
    expect(await loopDevicesOf(file, runner, true)).toEqual(['/dev/loop4']);
  });

  it('takes, for cleaning up, those whose backing device the kernel cannot report', async () => {
    const file = join(dir, 'gone', 'disk');
    const runner = listing([
      { name: '/dev/loop3', file, dev: '0:999' },
      { name: '/dev/loop5', file, dev: null },
    ]);
    expect(await loopDevicesOf(file, runner)).toEqual(['/dev/loop5']);
    expect(await loopDevicesOf(file, runner, true)).toEqual([]);
  });
});
