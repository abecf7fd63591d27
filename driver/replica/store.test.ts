import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsUtil } from './fsutil.js';
import { META_FILE, META_TMP_FILE, readMetadata } from './metadata.js';
import { hashBlocks } from './protocol.js';
import { ReplicaStore } from './store.js';

const MiB = 1024 * 1024;
const BLOCK = 64 * 1024;
const SIZE = 16 * MiB;
let root: string;
let dataDir: string;
let fsutil: FsUtil;
let n = 0;
const secret = randomBytes(32);
const open: ReplicaStore[] = [];

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tandem-store-test-'));
  fsutil = new FsUtil();
});
afterAll(async () => {
  await fsutil.close();
  rmSync(root, { recursive: true, force: true });
});
beforeEach(() => {
  dataDir = join(root, `d${n++}`);
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function create(volume = 'vol-a', sizeBytes = SIZE, epoch?: number): Promise<ReplicaStore> {
  const store = await ReplicaStore.create(dataDir, { volume, sizeBytes, secret, epoch }, fsutil);
  open.push(store);
  return store;
}

async function reopen(volume = 'vol-a'): Promise<ReplicaStore> {
  const store = await ReplicaStore.open(dataDir, volume, fsutil);
  open.push(store);
  return store;
}

const pattern = (length: number, seed: number): Buffer =>
  Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff));

describe('ReplicaStore lifecycle', () => {
  it('creates a sparse data file, meta.json and a 0600 secret', async () => {
    const store = await create('vol-a', SIZE, 3);
    expect([store.volume, store.sizeBytes, store.epoch, store.dirty, store.rebuilding]).toEqual([
      'vol-a',
      SIZE,
      3,
      false,
      false,
    ]);
    expect(store.secret.equals(secret)).toBe(true);
    const dir = join(dataDir, 'vol-a');
    const data = statSync(join(dir, 'data'));
    expect(data.size).toBe(SIZE);
    expect(data.blocks).toBe(0);
    expect(statSync(join(dir, 'secret')).mode & 0o777).toBe(0o600);
    expect(await readMetadata(dir)).toMatchObject({ volume: 'vol-a', sizeBytes: SIZE, epoch: 3 });
    expect(await store.extents(0, SIZE)).toEqual([]);
  });

  it('returns the existing replica for the same size and secret, and refuses a different one', async () => {
    const first = await create();
    await first.write(0, Buffer.alloc(BLOCK, 1));
    await first.setEpoch(5);
    const again = await create();
    expect(again.epoch).toBe(5);
    expect((await again.read(0, 4)).equals(Buffer.alloc(4, 1))).toBe(true);
    await expect(create('vol-a', SIZE * 2)).rejects.toMatchObject({ code: 'EXISTS' });
    await expect(
      ReplicaStore.create(dataDir, { volume: 'vol-a', sizeBytes: SIZE, secret: randomBytes(32) }, fsutil),
    ).rejects.toMatchObject({ code: 'EXISTS', message: expect.stringContaining('different secret') });
  });

  it('refuses short secrets and bad sizes', async () => {
    const bad = [
      { volume: 'v', sizeBytes: SIZE, secret: randomBytes(8) },
      { volume: 'v', sizeBytes: 0, secret },
      { volume: 'v', sizeBytes: 1.5, secret },
      { volume: 'v', sizeBytes: SIZE, secret, epoch: -1 },
    ];
    for (const options of bad) {
      await expect(ReplicaStore.create(dataDir, options, fsutil)).rejects.toMatchObject({ code: 'EINVAL' });
    }
    expect(await ReplicaStore.list(dataDir)).toEqual([]);
  });

  it('opens, lists and removes replicas; a missing one is ENOENT', async () => {
    await expect(ReplicaStore.open(dataDir, 'vol-a', fsutil)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await ReplicaStore.list(dataDir)).toEqual([]);
    await create('vol-b');
    await create('vol-a');
    // An interrupted create (no meta.json) and a stray file are not replicas.
    await fsp.mkdir(join(dataDir, 'half-made'));
    writeFileSync(join(dataDir, 'stray'), '');
    expect(await ReplicaStore.list(dataDir)).toEqual(['vol-a', 'vol-b']);
    await Promise.all(open.splice(0).map((s) => s.close()));
    await ReplicaStore.remove(dataDir, 'vol-a');
    await ReplicaStore.remove(dataDir, 'vol-a');
    expect(await ReplicaStore.list(dataDir)).toEqual(['vol-b']);
    await expect(ReplicaStore.open(dataDir, 'vol-a', fsutil)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('finishes a create a crash interrupted before meta.json', async () => {
    const dir = join(dataDir, 'vol-a');
    await fsp.mkdir(dir, { recursive: true });
    writeFileSync(join(dir, 'data'), 'partial');
    writeFileSync(join(dir, META_TMP_FILE), '{"torn');
    const store = await create();
    expect((await store.read(0, 7)).equals(Buffer.alloc(7))).toBe(true);
    await expect(fsp.stat(join(dir, META_TMP_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.each(['../x', 'a/b', '', '..', '.', 'x'.repeat(254), 'UPPER', '/etc'])(
    'refuses the volume name %j',
    async (name) => {
      await expect(
        ReplicaStore.create(dataDir, { volume: name, sizeBytes: SIZE, secret }, fsutil),
      ).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(ReplicaStore.open(dataDir, name, fsutil)).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(ReplicaStore.remove(dataDir, name)).rejects.toMatchObject({ code: 'EINVAL' });
    },
  );

  it('refuses operations after close, and close waits for running ones', async () => {
    const store = await create();
    const writing = store.write(0, Buffer.alloc(MiB, 3));
    await store.close();
    await writing;
    await expect(store.read(0, 1)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(store.setDirty(true)).rejects.toMatchObject({ code: 'EBADF' });
    expect(await (await reopen()).read(0, 1)).toEqual(Buffer.from([3]));
  });
});

describe('ReplicaStore I/O', () => {
  it('reads back what it wrote, aligned or not, and zeroes where nothing was written', async () => {
    const store = await create();
    const a = pattern(3 * BLOCK + 17, 1);
    const b = pattern(1000, 2);
    await Promise.all([store.write(5, a), store.write(8 * MiB + 3, b)]);
    expect((await store.read(5, a.length)).equals(a)).toBe(true);
    expect((await store.read(8 * MiB + 3, b.length)).equals(b)).toBe(true);
    const around = await store.read(0, a.length + 10);
    expect(around.subarray(0, 5).equals(Buffer.alloc(5))).toBe(true);
    expect(around.subarray(5, 5 + a.length).equals(a)).toBe(true);
    expect(around.subarray(5 + a.length).equals(Buffer.alloc(5))).toBe(true);
    expect((await store.read(SIZE - 4096, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    expect(await store.read(SIZE, 0)).toEqual(Buffer.alloc(0));
  });

  it('reads zeroes past the end of a data file shorter than the volume', async () => {
    const store = await create();
    await store.write(0, Buffer.alloc(100, 9));
    truncateSync(join(dataDir, 'vol-a', 'data'), 50);
    const data = await store.read(40, 4096);
    expect(data.subarray(0, 10).equals(Buffer.alloc(10, 9))).toBe(true);
    expect(data.subarray(10).equals(Buffer.alloc(4086))).toBe(true);
    // Opening again restores the full size (as after a crash inside resetData).
    await store.close();
    await reopen();
    expect(statSync(join(dataDir, 'vol-a', 'data')).size).toBe(SIZE);
  });

  it('refuses every range outside the volume with RangeError', async () => {
    const store = await create();
    const outside: Array<[number, number]> = [
      [-1, 1],
      [SIZE, 1],
      [SIZE - 1, 2],
      [0, SIZE + 1],
      [0.5, 1],
      [0, -1],
      [Number.MAX_SAFE_INTEGER, 1],
    ];
    for (const [offset, length] of outside) {
      await expect(store.read(offset, length)).rejects.toBeInstanceOf(RangeError);
      if (length >= 0)
        await expect(store.write(offset, Buffer.alloc(length))).rejects.toBeInstanceOf(RangeError);
      await expect(store.trim(offset, length)).rejects.toBeInstanceOf(RangeError);
      await expect(store.writeZeroes(offset, length, true)).rejects.toBeInstanceOf(RangeError);
      await expect(store.extents(offset, length)).rejects.toBeInstanceOf(RangeError);
      await expect(store.hash(offset, length, 4096)).rejects.toBeInstanceOf(RangeError);
    }
    await expect(store.hash(0, 4096, 1000)).rejects.toBeInstanceOf(RangeError);
    expect(statSync(join(dataDir, 'vol-a', 'data')).size).toBe(SIZE);
  });

  it('lists the extents it wrote, skipping holes', async () => {
    const store = await create();
    await store.write(BLOCK, Buffer.alloc(BLOCK, 1));
    await store.write(2 * BLOCK, Buffer.alloc(BLOCK, 1));
    await store.write(4 * MiB, Buffer.alloc(BLOCK, 1));
    await store.write(SIZE - BLOCK, Buffer.alloc(BLOCK, 1));
    expect(await store.extents(0, SIZE)).toEqual([
      { offset: BLOCK, length: 2 * BLOCK },
      { offset: 4 * MiB, length: BLOCK },
      { offset: SIZE - BLOCK, length: BLOCK },
    ]);
    expect(await store.extents(2 * BLOCK, 4 * MiB - 2 * BLOCK)).toEqual([
      { offset: 2 * BLOCK, length: BLOCK },
    ]);
  });

  it('trims into a hole that reads as zeroes', async () => {
    const store = await create();
    await store.write(0, Buffer.alloc(4 * BLOCK, 7));
    await store.trim(BLOCK, 2 * BLOCK);
    expect(await store.extents(0, SIZE)).toEqual([
      { offset: 0, length: BLOCK },
      { offset: 3 * BLOCK, length: BLOCK },
    ]);
    const data = await store.read(0, 4 * BLOCK);
    expect(data.subarray(BLOCK, 3 * BLOCK).equals(Buffer.alloc(2 * BLOCK))).toBe(true);
    expect(data[0]).toBe(7);
    expect(data[4 * BLOCK - 1]).toBe(7);
  });

  it('writes zeroes either as allocated blocks (noHole) or as a hole', async () => {
    const store = await create();
    await store.write(0, Buffer.alloc(4 * MiB, 7));
    await store.writeZeroes(0, 3 * MiB + 5, true);
    expect((await store.read(0, 3 * MiB + 5)).equals(Buffer.alloc(3 * MiB + 5))).toBe(true);
    expect((await store.read(3 * MiB + 5, 1))[0]).toBe(7);
    expect(await store.extents(0, 4 * MiB)).toEqual([{ offset: 0, length: 4 * MiB }]);
    await store.writeZeroes(0, 2 * MiB, false);
    expect(await store.extents(0, 4 * MiB)).toEqual([{ offset: 2 * MiB, length: 2 * MiB }]);
    expect((await store.read(0, 2 * MiB)).equals(Buffer.alloc(2 * MiB))).toBe(true);
  });

  it('hashes blocks exactly as hashBlocks does over the bytes, across read pieces', async () => {
    const store = await create();
    await store.write(100, pattern(2 * MiB, 5));
    await store.write(9 * MiB, pattern(MiB, 6));
    for (const [offset, length, blockSize] of [
      [0, SIZE, 1 * MiB],
      [4096, 12 * MiB + 100, 4096],
      [0, SIZE, 16 * MiB],
      [512, 3 * 512 + 7, 512],
    ] as const) {
      const expected = hashBlocks(await store.read(offset, length), blockSize);
      const got = await store.hash(offset, length, blockSize);
      expect(got.length).toBe(expected.length);
      expect(got.every((d, i) => d.equals(expected[i] as Buffer))).toBe(true);
    }
  });

  it('flushes, and resetData drops all data but keeps the size', async () => {
    const store = await create();
    await store.write(MiB, Buffer.alloc(BLOCK, 1));
    await store.flush();
    await store.resetData();
    expect(await store.extents(0, SIZE)).toEqual([]);
    expect((await store.read(MiB, BLOCK)).equals(Buffer.alloc(BLOCK))).toBe(true);
    expect(statSync(join(dataDir, 'vol-a', 'data')).size).toBe(SIZE);
  });
});

describe('ReplicaStore metadata', () => {
  it('persists epoch, dirty and rebuilding across a reopen', async () => {
    const store = await create();
    await store.setEpoch(4);
    await store.setDirty(true);
    await store.setRebuilding(true);
    await store.close();
    const again = await reopen();
    expect([again.epoch, again.dirty, again.rebuilding]).toEqual([4, true, true]);
    expect(await readMetadata(join(dataDir, 'vol-a'))).toMatchObject({
      epoch: 4,
      dirty: true,
      rebuilding: true,
    });
  });

  it('refuses to move the epoch backwards, also among concurrent updates', async () => {
    const store = await create('vol-a', SIZE, 2);
    await expect(store.setEpoch(1)).rejects.toMatchObject({ code: 'ESTALE' });
    await expect(store.setEpoch(-1)).rejects.toMatchObject({ code: 'EINVAL' });
    const results = await Promise.allSettled([store.setEpoch(9), store.setDirty(true), store.setEpoch(5)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect([store.epoch, store.dirty]).toEqual([9, true]);
    expect(await readMetadata(join(dataDir, 'vol-a'))).toMatchObject({ epoch: 9, dirty: true });
  });

  it('serializes many concurrent metadata updates without losing one', async () => {
    const store = await create();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? store.setEpoch(i)
          : i % 4 === 1
            ? store.setDirty(i % 8 === 1)
            : store.setRebuilding(true),
      ),
    );
    expect(await readMetadata(join(dataDir, 'vol-a'))).toMatchObject({
      epoch: 18,
      dirty: store.dirty,
      rebuilding: true,
    });
    await expect(fsp.stat(join(dataDir, 'vol-a', META_FILE))).resolves.toBeTruthy();
  });
});
