import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkVolumeName,
  type DurableFs,
  META_FILE,
  META_TMP_FILE,
  type ReplicaMetadata,
  readMetadata,
  writeMetadataAtomically,
} from './metadata.js';

let root: string;
let dir: string;
let n = 0;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tandem-metadata-test-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeEach(async () => {
  dir = join(root, `r${n++}`);
  await fsp.mkdir(dir);
});

const META: ReplicaMetadata = {
  version: 1,
  volume: 'pvc-1234.data',
  sizeBytes: 1 << 30,
  epoch: 7,
  dirty: false,
  rebuilding: false,
};

/** Real node:fs/promises that records every durable step, and can fail one on demand. */
function recordingFs(failOn?: string): { fs: DurableFs; steps: string[] } {
  const steps: string[] = [];
  const name = (path: string): string => (path === dir ? '<dir>' : path.slice(dir.length + 1));
  const step = (what: string): void => {
    steps.push(what);
    if (what === failOn) throw Object.assign(new Error(`injected failure at ${what}`), { code: 'EIO' });
  };
  const fs: DurableFs = {
    async open(path, flags, mode) {
      step(`open ${name(path)} ${flags}`);
      const handle = await fsp.open(path, flags, mode);
      return {
        writeFile: async (data) => {
          step(`write ${name(path)}`);
          await handle.writeFile(data);
        },
        sync: async () => {
          step(`fsync ${name(path)}`);
          await handle.sync();
        },
        close: async () => {
          steps.push(`close ${name(path)}`);
          await handle.close();
        },
      };
    },
    async rename(from, to) {
      step(`rename ${name(from)} ${name(to)}`);
      await fsp.rename(from, to);
    },
    readFile: (path) => fsp.readFile(path),
  };
  return { fs, steps };
}

describe('replica metadata', () => {
  it('round-trips through meta.json', async () => {
    await writeMetadataAtomically(dir, META);
    expect(await readMetadata(dir)).toEqual(META);
    await writeMetadataAtomically(dir, { ...META, epoch: 8, dirty: true });
    expect(await readMetadata(dir)).toEqual({ ...META, epoch: 8, dirty: true });
  });

  it('writes the temp file, fsyncs it, renames it over meta.json, then fsyncs the directory', async () => {
    const { fs, steps } = recordingFs();
    await writeMetadataAtomically(dir, META, fs);
    expect(steps).toEqual([
      `open ${META_TMP_FILE} w`,
      `write ${META_TMP_FILE}`,
      `fsync ${META_TMP_FILE}`,
      `close ${META_TMP_FILE}`,
      `rename ${META_TMP_FILE} ${META_FILE}`,
      'open <dir> r',
      'fsync <dir>',
      'close <dir>',
    ]);
  });

  it.each(['write meta.json.tmp', 'fsync meta.json.tmp', 'rename meta.json.tmp meta.json'])(
    'keeps the old meta.json when the write fails at "%s"',
    async (failOn) => {
      await writeMetadataAtomically(dir, META);
      const { fs } = recordingFs(failOn);
      await expect(writeMetadataAtomically(dir, { ...META, epoch: 99 }, fs)).rejects.toThrow(/injected/);
      expect(await readMetadata(dir)).toEqual(META);
    },
  );

  it('never reads a temp file a crash left behind, whole or torn', async () => {
    await writeMetadataAtomically(dir, META);
    const newer = JSON.stringify({ ...META, epoch: 100 });
    writeFileSync(join(dir, META_TMP_FILE), newer);
    expect(await readMetadata(dir)).toEqual(META);
    writeFileSync(join(dir, META_TMP_FILE), newer.slice(0, 20));
    expect(await readMetadata(dir)).toEqual(META);
    // The next write replaces the leftover rather than tripping over it.
    await writeMetadataAtomically(dir, { ...META, epoch: 8 });
    expect((await readMetadata(dir)).epoch).toBe(8);
  });

  it('rejects a missing meta.json with ENOENT, even when a temp file exists', async () => {
    writeFileSync(join(dir, META_TMP_FILE), JSON.stringify(META));
    await expect(readMetadata(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['wrong version', { version: 2 }, /field "version" must be 1/],
    ['epoch negative', { epoch: -1 }, /field "epoch" must be a non-negative integer/],
    ['epoch fractional', { epoch: 1.5 }, /field "epoch"/],
    ['epoch as string', { epoch: '7' }, /field "epoch"/],
    ['size zero', { sizeBytes: 0 }, /field "sizeBytes" must be a positive integer/],
    ['size unsafe', { sizeBytes: 2 ** 60 }, /field "sizeBytes"/],
    ['dirty as string', { dirty: 'no' }, /field "dirty" must be true or false/],
    ['rebuilding null', { rebuilding: null }, /field "rebuilding"/],
    ['volume escaping', { volume: '../etc' }, /field "volume": invalid volume name/],
    ['volume a number', { volume: 5 }, /field "volume" must be a string/],
    ['unknown field', { extra: true }, /unknown field "extra"/],
    ['missing field', { epoch: undefined }, /field "epoch" is missing/],
  ])('refuses meta.json with %s, naming the file and field', async (_name, change, message) => {
    writeFileSync(join(dir, META_FILE), JSON.stringify({ ...META, ...change }));
    const err = await readMetadata(dir).catch((e: unknown) => e as NodeJS.ErrnoException);
    expect(err).toMatchObject({ code: 'EINVAL' });
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain(join(dir, META_FILE));
  });

  it('refuses meta.json that is not a JSON object', async () => {
    for (const text of ['{"version":1', '[]', 'null', '']) {
      writeFileSync(join(dir, META_FILE), text);
      await expect(readMetadata(dir)).rejects.toMatchObject({ code: 'EINVAL' });
    }
  });

  it('refuses to write invalid metadata', async () => {
    await expect(writeMetadataAtomically(dir, { ...META, epoch: -1 })).rejects.toThrow(/field "epoch"/);
    await expect(fsp.stat(join(dir, META_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('writes readable, newline-terminated JSON', async () => {
    await writeMetadataAtomically(dir, META);
    const text = readFileSync(join(dir, META_FILE), 'utf8');
    expect(text.endsWith('}\n')).toBe(true);
    expect(JSON.parse(text)).toEqual(META);
  });
});

describe('checkVolumeName', () => {
  it.each(['a', 'pvc-0b5e6f1c-3a1d-4d4f-9b1e-2c3d4e5f6a7b', 'vol.example.com', '0', 'x'.repeat(63)])(
    'accepts %s',
    (name) => expect(() => checkVolumeName(name)).not.toThrow(),
  );

  it.each([
    '',
    '.',
    '..',
    '../x',
    'a/b',
    '/abs',
    'a/../b',
    '.hidden',
    'a..b',
    'Upper',
    '-lead',
    'trail-',
    'sp ace',
    'a\0b',
    'x'.repeat(64),
    'a.',
    'a_b',
  ])('refuses %j', (name) => {
    expect(() => checkVolumeName(name)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('refuses names longer than 253 bytes even when every label is valid', () => {
    const name = Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.'); // 304 bytes
    expect(() => checkVolumeName(name)).toThrow(/invalid volume name/);
    expect(() => checkVolumeName(name.slice(0, 253))).not.toThrow();
  });
});
