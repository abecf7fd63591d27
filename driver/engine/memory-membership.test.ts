import { type Membership, MembershipError } from './membership.js';
import { MemoryMembershipStore } from './memory-membership.js';

const initial = (): Membership => ({
  epoch: 3,
  sizeBytes: 1 << 20,
  replicas: [
    { node: 'a', address: '10.0.0.1:7410', mode: 'ReadWrite' },
    { node: 'b', address: '10.0.0.2:7410', mode: 'ReadWrite' },
  ],
  engines: [{ node: 'a', id: 'a/100/x' }],
});

/** The i-th replica of a record; the tests below only ask for ones that exist. */
function replica(m: Membership, i: number): Membership['replicas'][number] {
  const r = m.replicas[i];
  if (!r) throw new Error(`no replica ${i}`);
  return r;
}

const bump = (m: Membership): Membership => ({ ...m, epoch: m.epoch + 1 });

describe('MemoryMembershipStore', () => {
  it('reads copies: mutating what read() returned changes nothing stored', async () => {
    const store = new MemoryMembershipStore(initial());
    const first = await store.read();
    first.epoch = 99;
    replica(first, 0).mode = 'Failed';
    first.engines.push({ node: 'b', id: 'b/1/y' });
    expect(await store.read()).toEqual(initial());
    expect(store.reads).toBe(2);
  });

  it('copies the initial record and what set() was given', async () => {
    const record = initial();
    const store = new MemoryMembershipStore(record);
    record.epoch = 50;
    expect((await store.read()).epoch).toBe(3);
    const other = { ...initial(), epoch: 7 };
    store.set(other);
    other.epoch = 8;
    expect((await store.read()).epoch).toBe(7);
  });

  it('applies a change and resolves with the stored record', async () => {
    const store = new MemoryMembershipStore(initial());
    const after = await store.update((m) => {
      m.epoch++;
      replica(m, 1).mode = 'Failed'; // mutating the copy handed to the change is allowed
      return m;
    });
    expect(after.epoch).toBe(4);
    expect(after.replicas[1]?.mode).toBe('Failed');
    expect(await store.read()).toEqual(after);
    expect(store.updates).toBe(1);
  });

  it('leaves the record alone when the change returns undefined or an equal record', async () => {
    const store = new MemoryMembershipStore(initial());
    expect(await store.update(() => undefined)).toEqual(initial());
    expect(await store.update((m) => ({ ...m }))).toEqual(initial());
    expect(store.updates).toBe(0);
  });

  it.each<[string, (m: Membership) => Membership, RegExp]>([
    ['a lower epoch', (m) => ({ ...m, epoch: 2 }), /epoch 2 is lower than the stored 3/],
    ['a fractional epoch', (m) => ({ ...m, epoch: 3.5 }), /not a non-negative safe integer/],
    ['an unsafe epoch', (m) => ({ ...m, epoch: 2 ** 53 }), /not a non-negative safe integer/],
    [
      'three engines',
      (m) => ({
        ...m,
        engines: [
          { node: 'a', id: '1' },
          { node: 'b', id: '2' },
          { node: 'c', id: '3' },
        ],
      }),
      /3 engines, at most 2/,
    ],
    [
      'two engines with one id',
      (m) => ({
        ...m,
        engines: [
          { node: 'a', id: 'same' },
          { node: 'b', id: 'same' },
        ],
      }),
      /two engines with id same/,
    ],
    [
      'two replicas on one node',
      (m) => ({ ...m, replicas: [...m.replicas, { node: 'a', address: 'x:1', mode: 'WriteOnly' }] }),
      /two replicas on node a/,
    ],
    [
      'a replica without an address',
      (m) => ({ ...m, replicas: [{ node: 'c', address: '', mode: 'WriteOnly' }] }),
      /replica on node c has no address/,
    ],
    ['a new size', (m) => ({ ...m, sizeBytes: 2 << 20 }), /sizeBytes is the volume's spec/],
  ])('refuses %s and keeps the record', async (_what, change, message) => {
    const store = new MemoryMembershipStore(initial());
    const attempt = store.update(change);
    await expect(attempt).rejects.toThrow(MembershipError);
    await expect(attempt).rejects.toThrow(message);
    expect(await store.read()).toEqual(initial());
    expect(store.updates).toBe(0);
  });

  it('failNextUpdates fails exactly that many updates, then works again', async () => {
    const store = new MemoryMembershipStore(initial());
    const boom = new Error('apiserver unreachable');
    store.failNextUpdates(2, boom);
    await expect(store.update(bump)).rejects.toBe(boom);
    await expect(store.update(bump)).rejects.toBe(boom);
    expect((await store.update(bump)).epoch).toBe(4);
    store.failNextUpdates(1);
    await expect(store.update(bump)).rejects.toThrow(MembershipError);
    expect(store.updates).toBe(1);
  });

  it('concurrent updaters lose no update: the loser runs its change again', async () => {
    const store = new MemoryMembershipStore(initial());
    store.delayUpdates(1);
    const updater = async () => {
      for (let i = 0; i < 20; i++) await store.update(bump);
    };
    await Promise.all([updater(), updater()]);
    expect((await store.read()).epoch).toBe(43);
    expect(store.updates).toBe(40);
    expect(store.conflicts).toBeGreaterThan(0);
  });

  it('a set() between reading and writing makes the update run again on the new record', async () => {
    const store = new MemoryMembershipStore(initial());
    const seen: number[] = [];
    const after = await store.update((m) => {
      seen.push(m.epoch);
      if (seen.length === 1) store.set({ ...initial(), epoch: 10 }); // another writer gets in first
      return bump(m);
    });
    expect(after.epoch).toBe(11);
    expect(seen).toEqual([3, 10]);
    expect(store.conflicts).toBe(1);
    expect(store.updates).toBe(1);
  });

  it('set() takes any well-formed record, even a lower epoch, but not a malformed one', () => {
    const store = new MemoryMembershipStore(initial());
    expect(() => store.set({ ...initial(), epoch: 0 })).not.toThrow();
    expect(() => store.set({ ...initial(), epoch: -1 })).toThrow(MembershipError);
  });

  it('refuses an invalid initial record', () => {
    expect(
      () =>
        new MemoryMembershipStore({
          ...initial(),
          replicas: [{ node: 'a', address: '', mode: 'ReadWrite' }],
        }),
    ).toThrow(/replica on node a has no address/);
  });
});
