/**
 * Expansion in the engine: the served size follows the record's sizeBytes (the Volume's spec)
 * only once every replica written to holds it, rebuilds use the current size, and the NBD export
 * grows for new connections. Fake replicas with a size each: a range past it is OUT_OF_RANGE, as
 * the replica server answers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../lib/log.js';
import { FakeNetwork } from '../../test/harness/fake-network.js';
import { NbdTestClient } from '../../test/harness/nbd-test-client.js';
import { NBD_CMD, NBD_ERRNO } from '../nbd/constants.js';
import { ReplicaError } from '../replica/client.js';
import { Engine } from './engine.js';
import { EngineHost } from './host.js';
import { MemoryMembershipStore } from './memory-membership.js';
import { Rebuilder } from './rebuild.js';
import type { Connector, ReplicaLink } from './replica-set.js';
import { ReplicaSet } from './replica-set.js';

const MiB = 1024 * 1024;
const SIZE = 4 * MiB;
const BIG = 8 * MiB;
const NODES = ['node-1', 'node-2', 'node-3'];
const RANGED = new Set(['read', 'write', 'trim', 'writeZeroes', 'extents', 'hash']);

/** Three fake replicas, each with a size the tests grow; links range-check against it. */
function sizedNetwork() {
  const net = new FakeNetwork(BIG); // pages up to BIG may be stored; `sizes` says what is allowed
  for (const node of NODES) net.add(node, 1n);
  const sizes = new Map(NODES.map((n) => [n, SIZE]));
  const store = new MemoryMembershipStore({ ...net.record(1), sizeBytes: SIZE }, 'vol');
  const connector =
    (engine: string): Connector =>
    async (member, epoch) => {
      const link = await net.connector(engine)(member, epoch);
      const helloSize = sizes.get(member.node) ?? 0;
      return new Proxy(link, {
        get(target, prop) {
          if (prop === 'size') return helloSize;
          const value = Reflect.get(target, prop, target);
          if (typeof value !== 'function') return value;
          if (!RANGED.has(String(prop))) return value.bind(target);
          return (offset: number, lengthOrData: number | Buffer, ...rest: unknown[]) => {
            const length = typeof lengthOrData === 'number' ? lengthOrData : lengthOrData.length;
            const size = sizes.get(member.node) ?? 0;
            if (offset + length > size)
              return Promise.reject(
                new ReplicaError('OUT_OF_RANGE', `${member.node}: ${offset}+${length} outside ${size}`),
              );
            return value.call(target, offset, lengthOrData, ...rest);
          };
        },
      }) as ReplicaLink;
    };
  /** The controller raises spec.sizeBytes. */
  const expand = async (sizeBytes: number) => store.set({ ...(await store.read()), sizeBytes });
  return { net, sizes, store, connector, expand };
}

function engineOn(env: ReturnType<typeof sizedNetwork>, id = 'engine-a', node = 'node-1') {
  const log = silentLogger();
  const set = new ReplicaSet({
    engineId: id,
    localNode: node,
    store: env.store,
    connect: env.connector(id),
    log,
  });
  return { set, engine: new Engine({ volume: 'vol', set, log }) };
}

describe('engine expansion', () => {
  it('waits until every replica holds the new size, then serves it; writes past the old end reach all', async () => {
    const env = sizedNetwork();
    const { set, engine } = engineOn(env);
    await set.start('takeover');
    expect(set.sizeBytes).toBe(SIZE);
    expect(await set.resize()).toEqual({ sizeBytes: SIZE, wanted: SIZE });

    await env.expand(BIG);
    env.sizes.set('node-1', BIG);
    const waiting = await set.resize();
    expect(waiting).toMatchObject({ sizeBytes: SIZE, wanted: BIG });
    expect(waiting.waiting).toMatch(/node-2, node-3/);
    expect(set.sizeBytes).toBe(SIZE);
    env.sizes.set('node-2', BIG);
    expect((await set.resize()).waiting).toMatch(/node-3/);

    env.sizes.set('node-3', BIG);
    expect(await set.resize()).toEqual({ sizeBytes: BIG, wanted: BIG });
    expect(set.sizeBytes).toBe(BIG);
    const epoch = set.record.epoch;
    const last = Buffer.alloc(4096, 0x77);
    await engine.write(BIG - 4096, last, true);
    expect(await engine.read(BIG - 4096, 4096)).toEqual(last);
    for (const node of NODES) expect(env.net.replica(node).peek(BIG - 4096, 4096)).toEqual(last);
    // Old data is where it was; no replica was fenced on the way.
    expect(await engine.read(SIZE - 4096, 8192)).toEqual(
      Buffer.concat([Buffer.alloc(4096), Buffer.alloc(4096)]),
    );
    expect(set.record.epoch).toBe(epoch);
    expect(set.record.replicas.map((r) => r.mode)).toEqual(['ReadWrite', 'ReadWrite', 'ReadWrite']);
  });

  it('starts at the size every replica holds when the spec is ahead of them', async () => {
    const env = sizedNetwork();
    await env.expand(BIG);
    env.sizes.set('node-1', BIG);
    const { set } = engineOn(env);
    await set.start('takeover');
    expect(set.sizeBytes).toBe(SIZE);
    env.sizes.set('node-2', BIG);
    env.sizes.set('node-3', BIG);
    expect((await set.resize()).sizeBytes).toBe(BIG);
  });

  it('does not resize while two engines share the volume', async () => {
    const env = sizedNetwork();
    const a = engineOn(env, 'engine-a', 'node-1');
    const b = engineOn(env, 'engine-b', 'node-2');
    await a.set.start('takeover');
    await b.set.start('join');
    await env.expand(BIG);
    for (const node of NODES) env.sizes.set(node, BIG);
    expect((await a.set.resize()).waiting).toMatch(/two engines/);
    expect(a.set.sizeBytes).toBe(SIZE);
    await b.set.leave();
    expect(await a.set.resize()).toEqual({ sizeBytes: BIG, wanted: BIG });
  });

  it('rebuilds a Failed replica only once it holds the current size, copying past the old end', async () => {
    const env = sizedNetwork();
    const { set, engine } = engineOn(env);
    await set.start('takeover');
    await env.expand(BIG);
    for (const node of NODES) env.sizes.set(node, BIG);
    expect((await set.resize()).sizeBytes).toBe(BIG);
    await engine.write(BIG - 8192, Buffer.alloc(8192, 0x33), false);
    // node-3 is lost and comes back with a replica of the old size (restored from somewhere).
    env.net.replica('node-3').faults.push({ kind: 'fail', ops: ['write'], count: 1 });
    await engine.write(0, Buffer.alloc(4096, 0x44), false);
    expect(set.record.replicas.map((r) => r.mode)).toEqual(['ReadWrite', 'ReadWrite', 'Failed']);
    env.sizes.set('node-3', SIZE);
    const finished: string[] = [];
    const rebuilder = new Rebuilder(set, engine.lock, silentLogger(), {
      onFinished: (node, outcome) => finished.push(`${node} ${outcome}`),
    });
    await rebuilder.runOnce();
    expect(finished).toEqual([]); // not touched: smaller than the volume
    expect(set.record.replicas.map((r) => r.mode)).toEqual(['ReadWrite', 'ReadWrite', 'Failed']);
    env.sizes.set('node-3', BIG);
    await rebuilder.runOnce();
    expect(finished).toEqual(['node-3 done']);
    expect(env.net.replica('node-3').peek(BIG - 8192, 8192)).toEqual(Buffer.alloc(8192, 0x33));
    expect(env.net.identical()).toBe(true);
  });
});

describe('EngineHost.resize', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-resize-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('grows the NBD export for new connections once the replicas hold the new size', async () => {
    const env = sizedNetwork();
    const socket = join(dir, 'vol.sock');
    const host = await EngineHost.start({
      volume: 'vol',
      node: 'node-1',
      secret: Buffer.alloc(32, 1),
      store: env.store,
      mode: 'takeover',
      nbdSocket: socket,
      log: silentLogger(),
      rebuild: { enabled: false },
      connect: env.connector('host'),
    });
    const clients: NbdTestClient[] = [];
    const connect = async () => {
      const c = await NbdTestClient.connect(socket, 'vol');
      clients.push(c);
      return c;
    };
    try {
      const before = await connect();
      expect(before.size).toBe(BigInt(SIZE));
      await env.expand(BIG);
      env.sizes.set('node-1', BIG);
      expect((await host.resize()).waiting).toBeDefined();
      expect((await connect()).size).toBe(BigInt(SIZE));
      env.sizes.set('node-2', BIG);
      env.sizes.set('node-3', BIG);
      expect(await host.resize()).toEqual({ sizeBytes: BIG, wanted: BIG });
      const after = await connect();
      expect(after.size).toBe(BigInt(BIG));
      const last = Buffer.alloc(4096, 0xa5);
      expect((await after.request({ command: NBD_CMD.WRITE, offset: BIG - 4096, payload: last })).errno).toBe(
        0,
      );
      expect((await after.request({ command: NBD_CMD.READ, offset: BIG - 4096, length: 4096 })).data).toEqual(
        last,
      );
      // The connection opened before keeps its size.
      expect((await before.request({ command: NBD_CMD.READ, offset: BIG - 4096, length: 4096 })).errno).toBe(
        NBD_ERRNO.EINVAL,
      );
      expect((await host.scrub()).comparedBytes).toBeGreaterThan(0);
    } finally {
      for (const c of clients) c.close();
      await host.stop();
    }
  });
});
