import { FakeNetwork, fakeEngine } from '../../test/harness/fake-network.js';
import type { Membership } from './membership.js';
import { MemoryMembershipStore } from './memory-membership.js';
import { NoReplicaError, SupersededError } from './replica-set.js';

const SIZE = 1024 * 1024;

function setup(nodes = ['node-1', 'node-2', 'node-3'], record?: (r: Membership) => Membership) {
  const net = new FakeNetwork(SIZE);
  for (const node of nodes) net.add(node, 5n);
  const initial = net.record(5);
  const store = new MemoryMembershipStore(record === undefined ? initial : record(initial), 'vol');
  return { net, store };
}

const epochs = (net: FakeNetwork) => [...net.replicas.values()].map((r) => r.epoch);

describe('ReplicaSet membership changes', () => {
  it('takeover bumps the epoch, lists only this engine and pushes the epoch to every replica', async () => {
    const { net, store } = setup(['node-1', 'node-2', 'node-3'], (r) => ({
      ...r,
      engines: [{ node: 'node-9', id: 'old-engine' }],
    }));
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    const record = await store.read();
    expect(record.epoch).toBe(6);
    expect(record.engines).toEqual([{ node: 'node-1', id: 'engine-a' }]);
    expect(a.set.record).toEqual(record);
    expect(epochs(net)).toEqual([6n, 6n, 6n]);
    expect(a.set.readable().map((t) => t.member.node)).toEqual(['node-1', 'node-2', 'node-3']);
    expect(a.set.shared).toBe(false);
  });

  it('takeover turns a WriteOnly replica (an interrupted rebuild) into Failed and leaves it out', async () => {
    const { net, store } = setup(['node-1', 'node-2'], (r) => ({
      ...r,
      replicas: [
        r.replicas[0] as Membership['replicas'][number],
        { ...memberOn('node-2'), mode: 'WriteOnly' },
      ],
    }));
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    const record = await store.read();
    expect(record.replicas.map((r) => r.mode)).toEqual(['ReadWrite', 'Failed']);
    expect(a.set.writable().map((t) => t.member.node)).toEqual(['node-1']);
    expect(net.connects.map((c) => c.node)).toEqual(['node-1']);
  });

  it('takeover fences a replica it cannot reach in a further epoch', async () => {
    const { net, store } = setup();
    net.replica('node-3').stop();
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    const record = await store.read();
    expect(record.epoch).toBe(7);
    expect(record.replicas.map((r) => r.mode)).toEqual(['ReadWrite', 'ReadWrite', 'Failed']);
    expect(epochs(net)).toEqual([7n, 7n, 5n]);
  });

  it('a takeover supersedes the running engine: its next request ends in SupersededError', async () => {
    const { net, store } = setup();
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    const b = fakeEngine(net, store, 'engine-b', 'node-2');
    await b.set.start('takeover');
    await expect(a.set.recover([], true)).rejects.toThrow(SupersededError);
    expect(a.set.superseded).toBe(true);
    expect(a.set.writable()).toEqual([]);
    expect(a.set.readable()).toEqual([]);
    // Nothing A held is left open.
    for (const r of net.replicas.values()) expect([...r.links].map((l) => l.engine)).toEqual(['engine-b']);
  });

  it('join needs exactly one engine on the volume', async () => {
    const none = setup();
    await expect(fakeEngine(none.net, none.store, 'engine-b', 'node-2').set.start('join')).rejects.toThrow(
      /a join needs exactly one/,
    );
    expect((await none.store.read()).epoch).toBe(5);

    const two = setup(['node-1', 'node-2'], (r) => ({
      ...r,
      engines: [
        { node: 'node-1', id: 'engine-a' },
        { node: 'node-3', id: 'engine-c' },
      ],
    }));
    await expect(fakeEngine(two.net, two.store, 'engine-b', 'node-2').set.start('join')).rejects.toThrow(
      /2 engine\(s\)/,
    );
    expect((await two.store.read()).engines.map((e) => e.id)).toEqual(['engine-a', 'engine-c']);
  });

  it('join adds the engine in a new epoch; the first engine learns it on its next request', async () => {
    const { net, store } = setup();
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    const b = fakeEngine(net, store, 'engine-b', 'node-2');
    await b.set.start('join');
    const record = await store.read();
    expect(record.epoch).toBe(7);
    expect(record.engines.map((e) => e.id)).toEqual(['engine-a', 'engine-b']);
    expect(b.set.shared).toBe(true);
    expect(epochs(net)).toEqual([7n, 7n, 7n]);
    expect(a.set.shared).toBe(false);
    // A's next request is stamped 6: refused, so A reads the record again.
    await expect(a.engine.read(0, 512)).resolves.toHaveLength(512);
    expect(a.set.shared).toBe(true);
    expect(a.set.epoch).toBe(7n);
  });

  it('join needs every replica reachable, and a failed join does not stay in the record', async () => {
    const { net, store } = setup();
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    net.cut('engine-b', 'node-3');
    const b = fakeEngine(net, store, 'engine-b', 'node-2');
    await expect(b.set.start('join')).rejects.toThrow(NoReplicaError);
    const record = await store.read();
    // Nothing was fenced: the joiner cannot tell a dead replica from its own bad network.
    expect(record.replicas.map((r) => r.mode)).toEqual(['ReadWrite', 'ReadWrite', 'ReadWrite']);
    // A ghost second engine would stop rebuilds and keep reads validated forever.
    expect(record.engines.map((e) => e.id)).toEqual(['engine-a']);
    for (const r of net.replicas.values())
      expect([...r.links].every((l) => l.engine === 'engine-a')).toBe(true);
    // A carries on alone.
    await a.engine.write(0, Buffer.alloc(512, 1), false);
    expect(a.set.shared).toBe(false);
    expect(net.identical()).toBe(true);
  });

  it('leave removes the engine in a new epoch and closes its links', async () => {
    const { net, store } = setup();
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    await a.set.leave();
    const record = await store.read();
    expect(record.epoch).toBe(7);
    expect(record.engines).toEqual([]);
    expect(a.set.superseded).toBe(true);
    for (const r of net.replicas.values()) expect(r.links.size).toBe(0);
  });

  it('when one of two engines leaves, the other learns on its next request that it is alone', async () => {
    const { net, store } = setup();
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    const b = fakeEngine(net, store, 'engine-b', 'node-2');
    await b.set.start('join');
    await a.engine.read(0, 512);
    expect(a.set.shared).toBe(true);
    await b.set.leave();
    // The record alone would not tell A: the leaver pushed its epoch to the replicas.
    expect(epochs(net)).toEqual([8n, 8n, 8n]);
    await a.engine.read(0, 512);
    expect(a.set.shared).toBe(false);
    expect(a.set.epoch).toBe(8n);
  });

  it('re-reads the record when a replica knows a newer epoch than the one being adopted', async () => {
    const { net, store } = setup();
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    // Someone moved the record on and told node-2 only.
    store.set({ ...(await store.read()), epoch: 9 });
    await net.replica('node-2').admit(9n);
    const reads = store.reads;
    await a.set.recover([], true);
    expect(store.reads).toBeGreaterThan(reads);
    expect(a.set.epoch).toBe(9n);
    expect(epochs(net)).toEqual([9n, 9n, 9n]);
  });

  it('changeReplicas reports whether its change was stored, not just whether the epoch moved', async () => {
    const { net, store } = setup();
    const a = fakeEngine(net, store, 'engine-a', 'node-1');
    await a.set.start('takeover');
    const failNode3 = (r: Membership): Membership => ({
      ...r,
      epoch: r.epoch + 1,
      replicas: r.replicas.map((x) => (x.node === 'node-3' ? { ...x, mode: 'Failed' as const } : x)),
    });
    expect(await a.set.changeReplicas(failNode3)).toBe(true);
    expect(a.set.record.replicas[2]?.mode).toBe('Failed');
    expect(await a.set.changeReplicas(() => undefined)).toBe(false);
    // The record moved underneath (another writer): the change is not applied and says so.
    store.set({ ...(await store.read()), epoch: a.set.record.epoch + 3 });
    const promote = (r: Membership): Membership => ({
      ...r,
      epoch: r.epoch + 1,
      replicas: r.replicas.map((x) => ({ ...x, mode: 'ReadWrite' as const })),
    });
    expect(await a.set.changeReplicas(promote)).toBe(false);
    expect((await store.read()).replicas[2]?.mode).toBe('Failed');
    expect(a.set.epoch).toBe(BigInt((await store.read()).epoch));
  });
});

function memberOn(node: string): Membership['replicas'][number] {
  return { node, address: `fake://${node}`, mode: 'ReadWrite' };
}
