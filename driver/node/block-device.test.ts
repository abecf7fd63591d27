import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachBlockDevice, fuseLoopTarget, targetUri, unixSocketUri } from './block-device.js';
import { parseLosetupList } from './fuse-loop.js';
import { nbdClientArgs, parseNbdUri } from './kernel-nbd.js';
import { parseSizeLimitOutput } from './loop-ioctl.js';

describe('NBD URIs', () => {
  it('round-trips a unix socket path and export name with awkward characters', () => {
    const uri = unixSocketUri('/run/tandem/a b?c.sock', 'vol/x&y');
    expect(uri).toBe('nbd+unix:///vol/x%26y?socket=/run/tandem/a%20b%3Fc.sock');
    expect(parseNbdUri(uri)).toEqual({
      kind: 'unix',
      socket: '/run/tandem/a b?c.sock',
      exportName: 'vol/x&y',
    });
  });

  it('passes a given URI through and parses TCP ones', () => {
    expect(targetUri({ nbdUri: 'nbd://10.0.0.1:10900/vol-a' })).toBe('nbd://10.0.0.1:10900/vol-a');
    expect(parseNbdUri('nbd://10.0.0.1/vol-a')).toEqual({
      kind: 'tcp',
      host: '10.0.0.1',
      port: 10809,
      exportName: 'vol-a',
    });
    expect(() => parseNbdUri('nbds://h/x')).toThrow(/only nbd/);
  });

  it('builds nbd-client command lines', () => {
    expect(nbdClientArgs({ kind: 'unix', socket: '/s', exportName: 'v' }, '/dev/nbd3')).toEqual([
      '-unix',
      '/s',
      '/dev/nbd3',
      '-N',
      'v',
    ]);
  });
});

describe('what nbdfuse connects to', () => {
  it('the growable export, with the volume size as the loop limit, when the engine offers it', async () => {
    const asked: string[][] = [];
    const probe = async (_socket: string, names: readonly string[]) => {
      asked.push([...names]);
      return [8 << 20, 2 ** 52];
    };
    expect(await fuseLoopTarget('/run/e/pvc-1.sock', 'pvc-1', probe)).toEqual({
      uri: 'nbd+unix:///pvc-1%40growable?socket=/run/e/pvc-1.sock',
      sizeLimit: 8 << 20,
    });
    expect(asked).toEqual([['pvc-1', 'pvc-1@growable']]);
    expect(parseNbdUri('nbd+unix:///pvc-1%40growable?socket=/s').exportName).toBe('pvc-1@growable');
  });

  it('the export itself, without a limit, from an engine without the growable export', async () => {
    const probe = async () => [8 << 20, undefined];
    expect(await fuseLoopTarget('/s', 'pvc-1', probe)).toEqual({ uri: 'nbd+unix:///pvc-1?socket=/s' });
    await expect(fuseLoopTarget('/s', 'pvc-1', async () => [undefined, undefined])).rejects.toThrow(
      /no export pvc-1/,
    );
  });
});

describe('tandem-fsutil loop-sizelimit output', () => {
  it('reads the limit and the size, refuses anything else', () => {
    expect(parseSizeLimitOutput('{"device":"/dev/loop0","sizeLimit":4096,"sizeBytes":4096}\n')).toEqual({
      sizeLimit: 4096,
      sizeBytes: 4096,
    });
    expect(() => parseSizeLimitOutput('{"sizeLimit":"x"}')).toThrow(/printed/);
  });
});

describe('losetup listing', () => {
  it('reads names and backing files, and an empty listing', () => {
    const json = JSON.stringify({
      loopdevices: [
        { name: '/dev/loop0', 'back-file': '/var/lib/tandem/v/fuse/disk' },
        { name: '/dev/loop1', 'back-file': null },
      ],
    });
    expect(parseLosetupList(json)).toEqual([
      { name: '/dev/loop0', backFile: '/var/lib/tandem/v/fuse/disk', backDevice: '' },
      { name: '/dev/loop1', backFile: '', backDevice: '' },
    ]);
    expect(parseLosetupList('')).toEqual([]);
  });
});

describe('attachBlockDevice', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-attach-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it.each(['../x', 'a/b', '', '.hidden'])('refuses volume id %j (it names a directory)', async (volumeId) => {
    const runner = async () => {
      throw new Error('no command should run');
    };
    await expect(
      attachBlockDevice({ nbdUri: 'nbd://h/v', stateDir: dir, volumeId, frontend: 'nbdfuse', runner }),
    ).rejects.toThrow(/cannot name a directory/);
  });
});
