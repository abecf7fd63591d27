import { type FakeEngine, FakeNetwork, fakeEngine } from '../../test/harness/fake-network.js';
import { NbdIoError } from '../nbd/device.js';
import type { Membership } from './membership.js';
import { MemoryMembershipStore } from './memory-membership.js';

const SIZE = 1024 * 1024;
const NODES = ['node-1', 'node-2', 'node-3'];

async function attached(nodes = NODES, local = 'node-1', options: { timeoutMs?: number } = {}) {
  const net = new FakeNetwork(SIZE);
  for (const node of nodes) net.add(node, 1n);
  const store = new MemoryMembershipStore(net.record(1), 'vol');
  const a = fakeEngine(net, store, 'engine-a', local, options);
  await a.set.start('takeover');
  return { net, store, a };
}

const modes = (record: Membership) => Object.fromEntries(record.replicas.map((r) => [r.node, r.mode]));
const fill = (byte: number, length = 4096) => Buffer.alloc(length, byte);

async function rejection(promise: Promise<unknown>): Promise<NbdIoError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof NbdIoError)) throw new Error(`expected an NbdIoError, got ${String(err)}`);
  return err;
}

/** The engine's promise: every replica the record does not list as Failed holds what was acknowledged. */
async function expectHeldByEveryMember(
  net: FakeNetwork,
  store: MemoryMembershipStore,
  at: number,
  data: Buffer,
) {
  const record = await store.read();
  for (const r of record.replicas.filter((m) => m.mode !== 'Failed'))
    expect({ node: r.node, same: net.replica(r.node).peek(at, data.length).equals(data) }).toEqual({
      node: r.node,
      same: true,
    });
}

describe('Engine writes', () => {
  it('fans a write out to every replica and acknowledges when all hold it', async () => {
    const { net, a } = await attached();
    await a.engine.write(8192, fill(1, 12288), false);
    await a.engine.writeZeroes(8192, 4096, false, true);
    await a.engine.trim(12288, 4096, false);
    await a.engine.flush();
    const want = Buffer.concat([fill(0, 8192), fill(0, 4096), fill(0, 4096), fill(1, 4096)]);
    for (const r of net.replicas.values()) {
      expect(r.peek(0, want.length)).toEqual(want);
      expect(r.served.flush).toBe(1);
    }
  });

  it('fences a replica whose write fails, and the remaining ones hold the new epoch, before acknowledging', async () => {
    const { net, store, a } = await attached();
    net.replica('node-2').faults.push({ kind: 'fail', ops: ['write'], count: 1 });
    const seen: { record: Promise<Membership>; epochs: bigint[] }[] = [];
    await a.engine.write(0, fill(7), false).then(() => {
      // Taken synchronously when the write's promise resolves.
      seen.push({ record: store.read(), epochs: [...net.replicas.values()].map((r) => r.epoch) });
    });
    const [atResolve] = seen;
    const record = await atResolve?.record;
    expect(record?.epoch).toBe(3);
    expect(record && modes(record)).toEqual({
      'node-1': 'ReadWrite',
      'node-2': 'Failed',
      'node-3': 'ReadWrite',
    });
    expect(atResolve?.epochs).toEqual([3n, 2n, 3n]);
    expect(net.replica('node-2').peek(0, 4096)).toEqual(fill(0));
    await expectHeldByEveryMember(net, store, 0, fill(7));
    // Later writes leave it out.
    await a.engine.write(4096, fill(8), false);
    expect(net.replica('node-2').served.write).toBe(0);
  });

  it('fences a replica that does not answer once the link times out', async () => {
    const { net, store, a } = await attached(NODES, 'node-1', { timeoutMs: 100 });
    net.replica('node-3').faults.push({ kind: 'hang', ops: ['write'], count: 1 });
    await a.engine.write(0, fill(3), false);
    expect(modes(await store.read())['node-3']).toBe('Failed');
    await expectHeldByEveryMember(net, store, 0, fill(3));
  });

  it('fences a replica whose connection drops in the middle of a write', async () => {
    const { net, store, a } = await attached();
    net.replica('node-1').faults.push({ kind: 'disconnect', ops: ['write'], count: 1 });
    await a.engine.write(0, fill(2), false);
    expect(modes(await store.read())).toEqual({
      'node-1': 'Failed',
      'node-2': 'ReadWrite',
      'node-3': 'ReadWrite',
    });
    await expectHeldByEveryMember(net, store, 0, fill(2));
    // The local replica is gone: reads come from the others.
    expect(await a.engine.read(0, 4096)).toEqual(fill(2));
  });

  it('fences a replica whose connection dropped while idle on the next write instead of skipping it', async () => {
    const { net, store, a } = await attached();
    for (const link of net.replica('node-2').links) link.disconnect();
    await a.engine.write(0, fill(5), false);
    await expectHeldByEveryMember(net, store, 0, fill(5));
    expect(modes(await store.read())['node-2']).toBe('Failed');
  });

  it('never fences the last readable replica: the write fails with EIO instead', async () => {
    const one = await attached(['node-1']);
    one.net.replica('node-1').faults.push({ kind: 'fail', ops: ['write'] });
    expect((await rejection(one.a.engine.write(0, fill(1), false))).errno).toBe('EIO');
    expect(await one.store.read()).toMatchObject({ epoch: 2, replicas: [{ mode: 'ReadWrite' }] });

    const two = await attached(['node-1', 'node-2']);
    for (const r of two.net.replicas.values()) r.faults.push({ kind: 'fail', ops: ['write'] });
    expect((await rejection(two.a.engine.write(0, fill(1), false))).errno).toBe('EIO');
    expect(modes(await two.store.read())).toEqual({ 'node-1': 'ReadWrite', 'node-2': 'ReadWrite' });

    // With one replica fenced already, the other's failure cannot fence it too.
    const three = await attached(['node-1', 'node-2']);
    three.net.replica('node-2').faults.push({ kind: 'fail', ops: ['write'], count: 1 });
    await three.a.engine.write(0, fill(1), false);
    three.net.replica('node-1').faults.push({ kind: 'fail', ops: ['write'], count: 1 });
    expect((await rejection(three.a.engine.write(0, fill(2), false))).errno).toBe('EIO');
    expect(modes(await three.store.read())).toEqual({ 'node-1': 'ReadWrite', 'node-2': 'Failed' });
  });

  it('trial 14 of `npm run faults -- --seed 2026` (replay 1753776076): an engine cut off from every replica serves again once its link is back', async () => {
    const { net, store, a } = await attached(NODES, 'node-4');
    await a.engine.write(0, fill(1), false);
    for (const node of NODES) net.cut(a.id, node);
    expect((await rejection(a.engine.write(0, fill(2), false))).errno).toBe('EIO');
    expect((await rejection(a.engine.write(0, fill(2), false))).errno).toBe('EIO');
    expect((await rejection(a.engine.read(0, 4096))).errno).toBe('EIO');
    // Nothing could be fenced: every replica is one of the last readable ones.
    expect(modes(await store.read())).toEqual({
      'node-1': 'ReadWrite',
      'node-2': 'ReadWrite',
      'node-3': 'ReadWrite',
    });
    for (const node of NODES) net.heal(a.id, node);
    await a.engine.write(4096, fill(3), false);
    expect((await a.engine.read(4096, 4096)).equals(fill(3))).toBe(true);
    expect((await a.engine.read(0, 4096)).equals(fill(1))).toBe(true);
    await expectHeldByEveryMember(net, store, 4096, fill(3));
  });

  it('does not acknowledge a write when the fencing cannot be recorded', async () => {
    const { net, store, a } = await attached();
    net.replica('node-2').faults.push({ kind: 'fail', ops: ['write'], count: 1 });
    store.failNextUpdates(1);
    expect((await rejection(a.engine.write(0, fill(4), false))).errno).toBe('EIO');
    expect(modes(await store.read())['node-2']).toBe('ReadWrite');
  });

  it('reports ENOSPC when every replica is out of space, and fences a single full one', async () => {
    const { net, store, a } = await attached(['node-1', 'node-2']);
    net.replica('node-2').faults.push({ kind: 'fail', ops: ['write'], status: 'NO_SPACE', count: 1 });
    await a.engine.write(0, fill(1), false);
    expect(modes(await store.read())['node-2']).toBe('Failed');
    net.replica('node-1').faults.push({ kind: 'fail', ops: ['write'], status: 'NO_SPACE', count: 1 });
    expect((await rejection(a.engine.write(0, fill(2), false))).errno).toBe('ENOSPC');
  });

  it('re-reads the record and retries when a replica answers STALE_EPOCH', async () => {
    const { net, store, a } = await attached();
    // Another writer moved the record on (this engine still listed) and told node-3.
    store.set({ ...(await store.read()), epoch: 10 });
    await net.replica('node-3').admit(10n);
    const reads = store.reads;
    await a.engine.write(0, fill(9), false);
    expect(store.reads).toBeGreaterThan(reads);
    expect(a.set.epoch).toBe(10n);
    for (const r of net.replicas.values()) {
      expect(r.epoch).toBe(10n);
      expect(r.peek(0, 4096)).toEqual(fill(9));
    }
  });

  it('fails I/O with ESHUTDOWN once another engine took the volume over, changing nothing', async () => {
    const { net, store, a } = await attached();
    await a.engine.write(0, fill(1), false);
    const b = fakeEngine(net, store, 'engine-b', 'node-2');
    await b.set.start('takeover');
    expect((await rejection(a.engine.write(0, fill(2), false))).errno).toBe('ESHUTDOWN');
    expect((await rejection(a.engine.read(0, 4096))).errno).toBe('ESHUTDOWN');
    expect((await rejection(a.engine.flush())).errno).toBe('ESHUTDOWN');
    for (const r of net.replicas.values()) expect(r.peek(0, 4096)).toEqual(fill(1));
    expect(await b.engine.read(0, 4096)).toEqual(fill(1));
  });
});

describe('Engine reads', () => {
  it('prefer the local replica', async () => {
    const { net, a } = await attached(NODES, 'node-2');
    await a.engine.write(0, fill(6), false);
    for (let i = 0; i < 5; i++) expect(await a.engine.read(0, 4096)).toEqual(fill(6));
    expect([...net.replicas.values()].map((r) => r.reads.length)).toEqual([0, 5, 0]);
  });

  it('fence a local replica that fails a read and are served by another', async () => {
    const { net, store, a } = await attached(NODES, 'node-2');
    await a.engine.write(0, fill(6), false);
    net.replica('node-2').faults.push({ kind: 'fail', ops: ['read'], count: 1 });
    expect(await a.engine.read(0, 4096)).toEqual(fill(6));
    expect(modes(await store.read())['node-2']).toBe('Failed');
  });
});

describe('Two engines (live migration)', () => {
  async function pair(nodes: string[]) {
    const { net, store, a } = await attached(nodes, 'node-1');
    const b = fakeEngine(net, store, 'engine-b', 'node-2');
    await b.set.start('join');
    return { net, store, a, b };
  }

  it.each<[string, string[], 'a' | 'b']>([
    ['two replicas, A fences', ['node-1', 'node-2'], 'a'],
    ['three replicas, A fences', NODES, 'a'],
    ['two replicas, B fences', ['node-1', 'node-2'], 'b'],
  ])('a replica cut off from one engine never serves stale data to the other (%s)', async (_, nodes, who) => {
    const { net, store, a, b } = await pair(nodes);
    const [writer, reader]: [FakeEngine, FakeEngine] = who === 'a' ? [a, b] : [b, a];
    // The replica local to the reader is the one the writer loses.
    const lost = who === 'a' ? 'node-2' : 'node-1';
    await writer.engine.write(0, fill(1), false);
    await writer.engine.flush();
    expect(await reader.engine.read(0, 4096)).toEqual(fill(1));
    net.cut(writer.id, lost);
    await writer.engine.write(0, fill(2), false);
    expect(modes(await store.read())[lost]).toBe('Failed');
    expect(net.replica(lost).peek(0, 4096)).toEqual(fill(1)); // still holds the old data
    const readsBefore = net.replica(lost).reads.length;
    expect(await reader.engine.read(0, 4096)).toEqual(fill(2));
    // The reader did try its local copy; a probe at its old epoch told it the copy was fenced.
    expect(net.replica(lost).reads.length).toBe(readsBefore + 1);
    expect(reader.set.readable().map((t) => t.member.node)).not.toContain(lost);
  });

  it('both engines read what either wrote last', async () => {
    const { a, b } = await pair(NODES);
    for (let i = 1; i <= 6; i++) {
      const [writer, reader] = i % 2 === 0 ? [a, b] : [b, a];
      await writer.engine.write(4096 * (i % 3), fill(i), false);
      await writer.engine.flush();
      expect(await reader.engine.read(4096 * (i % 3), 4096)).toEqual(fill(i));
    }
  });
});
