import { silentLogger } from '../../lib/log.js';
import { FakeNetwork, fakeEngine } from '../../test/harness/fake-network.js';
import { seededRandom } from '../../test/harness/random.js';
import type { Membership } from './membership.js';
import { MemoryMembershipStore } from './memory-membership.js';
import { Rebuilder, type RebuildOptions } from './rebuild.js';

const SIZE = 4 * 1024 * 1024;
const CHUNK = 64 * 1024;

type Outcome = { node: string; outcome: string; copied: number };

/**
 * Three replicas, node-3 Failed and holding old contents everywhere; node-1 and node-2 hold a
 * few scattered extents written through engine A (local on node-1).
 */
async function failedThird(options: { failed?: string[]; rebuild?: RebuildOptions } = {}) {
  const failed = options.failed ?? ['node-3'];
  const net = new FakeNetwork(SIZE);
  for (const node of ['node-1', 'node-2', 'node-3']) net.add(node, 1n);
  const base = net.record(1);
  const store = new MemoryMembershipStore(
    {
      ...base,
      replicas: base.replicas.map((r) => (failed.includes(r.node) ? { ...r, mode: 'Failed' as const } : r)),
    },
    'vol',
  );
  for (const node of failed)
    for (let at = 0; at < SIZE; at += 256 * 1024) net.replica(node).poke(at, Buffer.alloc(8192, 0xee));
  const a = fakeEngine(net, store, 'engine-a', 'node-1');
  await a.set.start('takeover');
  const random = seededRandom(7);
  for (let i = 0; i < 12; i++) {
    const length = 4096 * (1 + Math.floor(random() * 40));
    const offset = 4096 * Math.floor(random() * ((SIZE - length) / 4096));
    await a.engine.write(offset, Buffer.alloc(length, 1 + i), false);
  }
  const finished: Outcome[] = [];
  const records: Membership[] = [];
  a.set.onChange = (record) => records.push(record);
  const rebuilder = new Rebuilder(a.set, a.engine.lock, silentLogger(), {
    chunkBytes: CHUNK,
    parallel: 2,
    ...options.rebuild,
    onFinished: (node, outcome, copied) => finished.push({ node, outcome, copied }),
  });
  return { net, store, a, rebuilder, finished, records };
}

const modes = (record: Membership) => record.replicas.map((r) => r.mode);

/** Pages covered by ranges, to compare what was read against what is allocated. */
function pages(ranges: { offset: number; length: number }[]): Set<number> {
  const out = new Set<number>();
  for (const r of ranges)
    for (let p = Math.floor(r.offset / 4096); p * 4096 < r.offset + r.length; p++) out.add(p);
  return out;
}

describe('Rebuilder', () => {
  it('wipes a Failed replica, joins it WriteOnly, copies only allocated extents, then makes it ReadWrite', async () => {
    const { net, store, rebuilder, finished, records } = await failedThird();
    const source = net.replica('node-1');
    const allocated = source.allocatedBytes();
    const epoch = (await store.read()).epoch;
    await rebuilder.runOnce();
    expect(finished).toEqual([{ node: 'node-3', outcome: 'done', copied: allocated }]);
    const record = await store.read();
    expect(modes(record)).toEqual(['ReadWrite', 'ReadWrite', 'ReadWrite']);
    expect(record.epoch).toBe(epoch + 2);
    // (Records adopted again unchanged, as a refresh does, are not changes.)
    const changes = records.filter((r) => r.epoch > epoch);
    expect(changes.map((r) => [r.epoch, r.replicas[2]?.mode])).toEqual([
      [epoch + 1, 'WriteOnly'],
      [epoch + 2, 'ReadWrite'],
    ]);
    expect(changes[0]?.replicas[2]?.rebuildProgress).toBe(0);
    // Holes were skipped: every page the copy read is allocated on the source.
    const read = pages(source.reads);
    expect([...read].every((p) => source.pages.has(p))).toBe(true);
    expect(read.size * 4096).toBe(allocated);
    // The old contents are gone, the holes are holes again, and the data matches.
    expect(net.identical()).toBe(true);
    expect(net.replica('node-3').allocatedBytes()).toBe(allocated);
    expect(net.replica('node-3').epoch).toBe(BigInt(record.epoch));
  });

  it('delivers every write made during the copy to the rebuilding replica', async () => {
    const { net, store, a, rebuilder, finished } = await failedThird({
      rebuild: { chunkBytes: 16 * 1024, parallel: 2 },
    });
    net.replica('node-1').latency = (op) => (op === 'read' ? 2 : 0);
    const writes: Promise<void>[] = [];
    const modesAtWrite: string[] = [];
    const random = seededRandom(11);
    const copying = rebuilder.runOnce();
    // Writes everywhere, holes included, while chunks are being copied.
    for (let i = 0; i < 60; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      const offset = 512 * Math.floor(random() * ((SIZE - 8192) / 512));
      modesAtWrite.push(a.set.record.replicas[2]?.mode ?? '');
      writes.push(a.engine.write(offset, Buffer.alloc(512 + Math.floor(random() * 7680), 100 + i), false));
    }
    await Promise.all([copying, ...writes]);
    expect(finished.map((f) => f.outcome)).toEqual(['done']);
    expect(modesAtWrite).toContain('WriteOnly');
    expect(modes(await store.read())).toEqual(['ReadWrite', 'ReadWrite', 'ReadWrite']);
    expect(net.identical()).toBe(true);
  });

  it('does not start while two engines share the volume', async () => {
    const { net, store, a, rebuilder, finished } = await failedThird();
    const b = fakeEngine(net, store, 'engine-b', 'node-2');
    await b.set.start('join');
    // A has not noticed yet: whatever it tries must not make node-3 a member.
    await rebuilder.runOnce();
    expect(modes(await store.read())).toEqual(['ReadWrite', 'ReadWrite', 'Failed']);
    await a.engine.read(0, 512); // now A knows
    expect(a.set.shared).toBe(true);
    const connects = net.connects.length;
    await rebuilder.runOnce();
    expect(net.connects.length).toBe(connects);
    expect(modes(await store.read())).toEqual(['ReadWrite', 'ReadWrite', 'Failed']);
    expect(finished.every((f) => f.outcome !== 'done')).toBe(true);
  });

  it('stops when a second engine attaches midway and leaves the replica Failed, to be rebuilt later', async () => {
    const { net, store, a, rebuilder, finished } = await failedThird({
      rebuild: { chunkBytes: 16 * 1024, parallel: 1 },
    });
    net.replica('node-1').latency = (op) => (op === 'read' ? 2 : 0);
    const b = fakeEngine(net, store, 'engine-b', 'node-2');
    let joined: Promise<void> | undefined;
    const progress = new Rebuilder(a.set, a.engine.lock, silentLogger(), {
      chunkBytes: 16 * 1024,
      parallel: 1,
      onProgress: () => {
        joined ??= b.set.start('join');
      },
      onFinished: (node, outcome, copied) => finished.push({ node, outcome, copied }),
    });
    await progress.runOnce();
    await joined;
    expect(finished.map((f) => f.outcome)).not.toContain('done');
    const record = await store.read();
    expect(record.engines.map((e) => e.id)).toEqual(['engine-a', 'engine-b']);
    // Not stuck WriteOnly (nobody rebuilds a WriteOnly replica): Failed, so a rebuild can run later.
    expect(modes(record)).toEqual(['ReadWrite', 'ReadWrite', 'Failed']);
    // Both engines carry on with node-1 and node-2.
    await b.engine.write(0, Buffer.alloc(4096, 0x55), false);
    expect(await a.engine.read(0, 4096)).toEqual(Buffer.alloc(4096, 0x55));
    // The migration ends (B leaves); A rebuilds node-3 in full.
    await b.set.leave();
    await a.engine.read(0, 512);
    expect(a.set.shared).toBe(false);
    await rebuilder.runOnce();
    expect(modes(await store.read())).toEqual(['ReadWrite', 'ReadWrite', 'ReadWrite']);
    expect(net.identical()).toBe(true);
  });

  it('fences the replica again when it fails during the copy, and a later attempt succeeds', async () => {
    const { net, store, rebuilder, finished } = await failedThird({ rebuild: { chunkBytes: 16 * 1024 } });
    net.replica('node-3').faults.push({ kind: 'fail', ops: ['write'], count: 1 });
    await rebuilder.runOnce();
    expect(finished.map((f) => f.outcome)).toEqual(['failed']);
    expect(modes(await store.read())).toEqual(['ReadWrite', 'ReadWrite', 'Failed']);
    await rebuilder.runOnce();
    expect(finished.map((f) => f.outcome)).toEqual(['failed', 'done']);
    expect(net.identical()).toBe(true);
  });

  it('skips a Failed replica that does not answer and rebuilds one that does', async () => {
    const { net, store, rebuilder, finished } = await failedThird({ failed: ['node-2', 'node-3'] });
    net.replica('node-2').stop();
    await rebuilder.runOnce();
    expect(finished).toMatchObject([{ node: 'node-3', outcome: 'done' }]);
    expect(modes(await store.read())).toEqual(['ReadWrite', 'Failed', 'ReadWrite']);
    expect(net.identical(['node-1', 'node-3'])).toBe(true);
  });

  it('does not touch a replica smaller than the volume (not grown yet)', async () => {
    const { net, store, rebuilder, finished } = await failedThird();
    const before = net.replica('node-3').peek(0, 8192);
    Object.defineProperty(net.replica('node-3'), 'size', { value: SIZE / 2 });
    await rebuilder.runOnce();
    expect(finished).toEqual([]);
    expect(net.replica('node-3').served.trim).toBe(0);
    expect(net.replica('node-3').peek(0, 8192)).toEqual(before);
    expect(modes(await store.read())).toEqual(['ReadWrite', 'ReadWrite', 'Failed']);
  });

  it('rebuilds a replica grown ahead of the engine, wiping it whole', async () => {
    const { net, store, rebuilder, finished } = await failedThird();
    Object.defineProperty(net.replica('node-3'), 'size', { value: SIZE * 2 });
    net.replica('node-3').poke(SIZE + 4096, Buffer.alloc(4096, 0xee));
    await rebuilder.runOnce();
    expect(finished).toMatchObject([{ node: 'node-3', outcome: 'done' }]);
    expect(modes(await store.read())).toEqual(['ReadWrite', 'ReadWrite', 'ReadWrite']);
    expect(net.replica('node-3').peek(SIZE + 4096, 4096)).toEqual(Buffer.alloc(4096));
    expect(net.identical()).toBe(true);
  });
});
