/**
 * Growing a replica (expansion): on disk (ReplicaStore.grow, with the crash between its two steps)
 * and live, through the replica server's registry while sessions are open and writing.
 */
import { randomBytes } from 'node:crypto';
import { statSync, truncateSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { silentLogger } from '../../lib/log.js';
import { ReplicaClient, ReplicaError } from './client.js';
import { readMetadata } from './metadata.js';
import { ReplicaServer } from './server.js';
import { ReplicaStore } from './store.js';

const MiB = 1024 * 1024;
const SIZE = 4 * MiB;
const BIG = 12 * MiB;
const VOLUME = 'vol-grow';
const secret = randomBytes(32);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tandem-grow-test-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const dataFile = () => join(dir, VOLUME, 'data');
const create = () => ReplicaStore.create(dir, { volume: VOLUME, sizeBytes: SIZE, secret, epoch: 1 });

describe('ReplicaStore.grow', () => {
  it('extends the sparse data file and meta.json; the new range is usable and survives a reopen', async () => {
    const store = await create();
    await store.write(SIZE - 4096, Buffer.alloc(4096, 7));
    await expect(store.write(SIZE, Buffer.alloc(4096, 8))).rejects.toThrow(RangeError);
    expect(await store.grow(BIG)).toBe(true);
    expect(store.sizeBytes).toBe(BIG);
    expect(statSync(dataFile()).size).toBe(BIG);
    expect((await readMetadata(join(dir, VOLUME))).sizeBytes).toBe(BIG);
    await store.write(BIG - 4096, Buffer.alloc(4096, 9));
    expect(await store.read(SIZE - 4096, 8192)).toEqual(
      Buffer.concat([Buffer.alloc(4096, 7), Buffer.alloc(4096)]),
    );
    // Nothing was allocated for the grown range but the block written there.
    expect(await store.extents(SIZE, BIG - SIZE)).toEqual([{ offset: BIG - 4096, length: 4096 }]);
    await store.close();
    const again = await ReplicaStore.open(dir, VOLUME);
    expect([again.sizeBytes, again.epoch]).toEqual([BIG, 1]);
    expect(await again.read(BIG - 4096, 4096)).toEqual(Buffer.alloc(4096, 9));
    await again.close();
  });

  it('is a no-op for the same size and refuses to shrink', async () => {
    const store = await create();
    expect(await store.grow(SIZE)).toBe(false);
    await expect(store.grow(SIZE - 4096)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(store.grow(Number.NaN)).rejects.toMatchObject({ code: 'EINVAL' });
    expect(store.sizeBytes).toBe(SIZE);
    expect((await readMetadata(join(dir, VOLUME))).sizeBytes).toBe(SIZE);
    await store.close();
  });

  it('after a crash between the two steps (file extended, meta.json not): opens at the old size', async () => {
    await (await create()).close();
    truncateSync(dataFile(), BIG); // the first step of grow() happened, the second did not
    const store = await ReplicaStore.open(dir, VOLUME);
    expect(store.sizeBytes).toBe(SIZE);
    expect(statSync(dataFile()).size).toBe(SIZE); // trimmed back: meta.json is the truth
    await expect(store.read(SIZE, 1)).rejects.toThrow(RangeError);
    // The grow, run again, completes.
    await store.grow(BIG);
    expect(statSync(dataFile()).size).toBe(BIG);
    expect(await store.read(BIG - 4096, 4096)).toEqual(Buffer.alloc(4096));
    await store.close();
  });

  it('keeps epoch and dirty updates made around it (one metadata chain)', async () => {
    const store = await create();
    await Promise.all([store.setEpoch(4), store.grow(BIG), store.setDirty(true), store.setEpoch(6)]);
    expect(await readMetadata(join(dir, VOLUME))).toMatchObject({ sizeBytes: BIG, epoch: 6, dirty: true });
    await store.close();
  });
});

describe('growing a live replica through the replica server', () => {
  let server: ReplicaServer;
  let port: number;
  const client = (engineId = 'engine') =>
    ReplicaClient.connect({
      address: `127.0.0.1:${port}`,
      volume: VOLUME,
      engineId,
      secret,
      epoch: 1n,
      requestTimeoutMs: 5000,
      log: silentLogger(),
    });

  beforeEach(async () => {
    await (await create()).close();
    server = new ReplicaServer({ dataDir: dir, log: silentLogger() });
    port = await server.listen('127.0.0.1', 0);
  });
  afterEach(async () => {
    await server.close();
  });

  it('open sessions range-check against the new size at once; new HELLOs carry it', async () => {
    const engine = await client();
    expect(engine.size).toBe(SIZE);
    await expect(engine.write(SIZE, Buffer.alloc(4096, 1), false)).rejects.toMatchObject({
      status: 'OUT_OF_RANGE',
    });
    // The zero-length READ at an offset is the engine's size check: fine up to the size only.
    await engine.read(SIZE, 0);
    await expect(engine.read(SIZE + 1, 0)).rejects.toBeInstanceOf(ReplicaError);

    expect(await server.registry.grow(VOLUME, BIG)).toBe(BIG);
    await engine.read(BIG, 0);
    await engine.write(BIG - 4096, Buffer.alloc(4096, 2), true);
    expect(await engine.read(BIG - 4096, 4096)).toEqual(Buffer.alloc(4096, 2));
    await expect(engine.read(BIG, 1)).rejects.toMatchObject({ status: 'OUT_OF_RANGE' });
    const later = await client('later');
    expect(later.size).toBe(BIG);
    engine.close();
    later.close();
  });

  it('lets writes in flight finish and admits nothing past the old end before the grow is done', async () => {
    const engine = await client();
    const BLOCK = 64 * 1024;
    const writes = Array.from({ length: SIZE / BLOCK }, (_, i) =>
      engine.write(i * BLOCK, Buffer.alloc(BLOCK, 1 + i), false),
    );
    const grown = server.registry.grow(VOLUME, BIG);
    // Sent before the grow resolves: checked against whichever size the store has when it arrives,
    // so it either fails cleanly or lands inside the grown file, never past the file's end.
    const early = engine.write(BIG - 4096, Buffer.alloc(4096, 3), false).then(
      () => 'ok',
      (err: ReplicaError) => err.status,
    );
    await Promise.all(writes);
    await grown;
    expect(['ok', 'OUT_OF_RANGE']).toContain(await early);
    expect(statSync(dataFile()).size).toBe(BIG);
    for (let i = 0; i < SIZE / BLOCK; i++)
      expect(await engine.read(i * BLOCK, BLOCK)).toEqual(Buffer.alloc(BLOCK, 1 + i));
    engine.close();
  });

  it('grows a replica no session has open without touching its dirty flag', async () => {
    const store = await ReplicaStore.open(dir, VOLUME);
    await store.setDirty(true); // as a crashed engine left it
    await store.close();
    expect(await server.registry.grow(VOLUME, BIG)).toBe(BIG);
    expect(await readMetadata(join(dir, VOLUME))).toMatchObject({ sizeBytes: BIG, dirty: true });
    await expect(server.registry.grow(VOLUME, SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(server.registry.grow('vol-none', BIG)).rejects.toMatchObject({ code: 'ENOENT' });
    const engine = await client();
    expect([engine.size, engine.dirty]).toEqual([BIG, true]);
    engine.close();
  });
});
