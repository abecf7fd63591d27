import { ApiException } from '@kubernetes/client-node';
import { newVolume, type Volume } from '../../lib/api/volume.js';
import { KubeMembershipStore, membershipOf, type VolumeAccess, withMembership } from './kube-membership.js';
import { type Membership, MembershipError } from './membership.js';
import { conflictBackoffMs } from './membership-rules.js';

const SIZE = 8 << 20;

function volume(status: Volume['status'], resourceVersion = '7'): Volume {
  const v = newVolume('vol-1', {
    sizeBytes: SIZE,
    numberOfReplicas: 2,
    accessMode: 'ReadWriteMany',
    volumeMode: 'Block',
    migratable: true,
  });
  v.metadata.resourceVersion = resourceVersion;
  if (status) v.status = status;
  return v;
}

const attached = (): Volume['status'] => ({
  state: 'Attached',
  robustness: 'Healthy',
  node: 'a',
  healthyReplicas: 2,
  epoch: 3,
  replicas: [
    { node: 'a', address: '10.0.0.1:7410', mode: 'ReadWrite' },
    { node: 'b', address: '10.0.0.2:7410', mode: 'WriteOnly', rebuildProgress: 40 },
  ],
  engines: [{ node: 'a', id: 'a/100/x' }],
  migration: { source: 'a', target: 'b' },
  conditions: [{ type: 'Ready', status: 'True', reason: 'Attached' }],
});

const apiError = (code: number, message: string) =>
  new ApiException(code, 'Unknown API Status Code!', JSON.stringify({ kind: 'Status', message }), {});

/** An apiserver stand-in for one Volume: GET copies, status PUT compares resourceVersion. */
class FakeVolumes implements VolumeAccess {
  gets = 0;
  writes: Volume[] = [];
  getError?: unknown;
  writeErrors: unknown[] = [];
  /** Runs after the store's GET of attempt n (1-based), before its write: another writer. */
  interleave?: (attempt: number) => void;

  constructor(public stored: Volume) {}

  async get(name: string): Promise<Volume> {
    this.gets++;
    if (this.getError) throw this.getError;
    expect(name).toBe(this.stored.metadata.name);
    const copy = structuredClone(this.stored);
    this.interleave?.(this.gets);
    return copy;
  }

  async replaceStatus(v: Volume): Promise<Volume> {
    this.writes.push(structuredClone(v));
    const error = this.writeErrors.shift();
    if (error) throw error;
    if (v.metadata.resourceVersion !== this.stored.metadata.resourceVersion)
      throw apiError(409, 'the object has been modified; please apply your changes to the latest version');
    this.stored = { ...structuredClone(v), spec: this.stored.spec };
    this.bump();
    return structuredClone(this.stored);
  }

  /** Another writer's status change. */
  writeStatus(status: Volume['status']): void {
    this.stored.status = status;
    this.bump();
  }

  private bump(): void {
    this.stored.metadata.resourceVersion = String(Number(this.stored.metadata.resourceVersion) + 1);
  }
}

/** The i-th replica of a record; the tests below only ask for ones that exist. */
function replica(m: Membership, i: number): Membership['replicas'][number] {
  const r = m.replicas[i];
  if (!r) throw new Error(`no replica ${i}`);
  return r;
}

const noWait = { backoff: async () => undefined };
const bump = (m: Membership): Membership => ({ ...m, epoch: m.epoch + 1 });

describe('membershipOf', () => {
  it('maps status and spec to a record, rebuild progress from percent to a fraction', () => {
    expect(membershipOf(volume(attached()))).toEqual({
      epoch: 3,
      sizeBytes: SIZE,
      replicas: [
        { node: 'a', address: '10.0.0.1:7410', mode: 'ReadWrite' },
        { node: 'b', address: '10.0.0.2:7410', mode: 'WriteOnly', rebuildProgress: 0.4 },
      ],
      engines: [{ node: 'a', id: 'a/100/x' }],
    });
  });

  it('reads a volume without status as epoch 0 with no members', () => {
    expect(membershipOf(volume(undefined))).toEqual({ epoch: 0, sizeBytes: SIZE, replicas: [], engines: [] });
    expect(membershipOf(volume({ state: 'Creating' }))).toMatchObject({
      epoch: 0,
      replicas: [],
      engines: [],
    });
  });

  it('refuses a record whose replica has no address', () => {
    const status = { epoch: 1, replicas: [{ node: 'b', mode: 'ReadWrite' as const }] };
    expect(() => membershipOf(volume(status))).toThrow(MembershipError);
    expect(() => membershipOf(volume(status))).toThrow('volume vol-1: replica on node b has no address');
  });

  it('refuses an epoch beyond a safe integer', () => {
    expect(() => membershipOf(volume({ epoch: 2 ** 53 }))).toThrow(/not a non-negative safe integer/);
  });
});

describe('withMembership', () => {
  it('writes epoch, replicas and engines and leaves every other field as it was', () => {
    const before = volume(attached());
    const after = withMembership(before, {
      epoch: 4,
      sizeBytes: SIZE,
      replicas: [{ node: 'a', address: '10.0.0.1:7410', mode: 'ReadWrite' }],
      engines: [
        { node: 'a', id: 'a/100/x' },
        { node: 'b', id: 'b/200/y' },
      ],
    });
    const { epoch, replicas, engines, ...rest } = after.status ?? {};
    const { epoch: _e, replicas: _r, engines: _g, ...restBefore } = before.status ?? {};
    expect(rest).toEqual(restBefore);
    expect(after.metadata).toEqual(before.metadata);
    expect(after.spec).toEqual(before.spec);
    expect({ epoch, replicas, engines }).toEqual({
      epoch: 4,
      replicas: [{ node: 'a', address: '10.0.0.1:7410', mode: 'ReadWrite' }],
      engines: [
        { node: 'a', id: 'a/100/x' },
        { node: 'b', id: 'b/200/y' },
      ],
    });
    expect(before.status?.epoch).toBe(3); // the input is not modified
  });

  it('stores rebuild progress as whole percent, and a record survives the round trip', () => {
    const record = membershipOf(volume(attached()));
    replica(record, 1).rebuildProgress = 0.257;
    expect(withMembership(volume(attached()), record).status?.replicas?.[1]?.rebuildProgress).toBe(26);
    replica(record, 1).rebuildProgress = 0.26;
    expect(membershipOf(withMembership(volume(attached()), record))).toEqual(record);
  });
});

describe('KubeMembershipStore', () => {
  it('reads fresh from the apiserver every time', async () => {
    const api = new FakeVolumes(volume(attached()));
    const store = new KubeMembershipStore(api, 'vol-1');
    expect((await store.read()).epoch).toBe(3);
    api.writeStatus({ ...attached(), epoch: 9 });
    expect((await store.read()).epoch).toBe(9);
    expect(api.gets).toBe(2);
  });

  it('writes the change with the resourceVersion it read and keeps the rest of status', async () => {
    const api = new FakeVolumes(volume(attached()));
    const store = new KubeMembershipStore(api, 'vol-1', noWait);
    const after = await store.update((m) => {
      m.epoch++;
      replica(m, 0).mode = 'Failed';
      m.engines.push({ node: 'b', id: 'b/200/y' });
      return m;
    });
    expect(after.epoch).toBe(4);
    expect(after.replicas[0]?.mode).toBe('Failed');
    expect(after.engines).toHaveLength(2);
    expect(api.writes).toHaveLength(1);
    expect(api.writes[0]?.metadata.resourceVersion).toBe('7');
    expect(api.stored.status).toMatchObject({
      state: 'Attached',
      migration: { source: 'a', target: 'b' },
      conditions: [{ type: 'Ready', status: 'True', reason: 'Attached' }],
      healthyReplicas: 2,
    });
  });

  it('does not write when the change returns undefined, an equal record, or finer progress', async () => {
    const api = new FakeVolumes(volume(attached()));
    const store = new KubeMembershipStore(api, 'vol-1', noWait);
    expect((await store.update(() => undefined)).epoch).toBe(3);
    expect((await store.update((m) => m)).epoch).toBe(3);
    const progress = await store.update((m) => {
      replica(m, 1).rebuildProgress = 0.401;
      return m;
    });
    expect(progress.replicas[1]?.rebuildProgress).toBe(0.4);
    expect(api.writes).toHaveLength(0);
  });

  it('on a conflict reads again and runs the change on the newer record', async () => {
    const api = new FakeVolumes(volume(attached()));
    api.interleave = (attempt) => {
      if (attempt === 1) api.writeStatus({ ...attached(), epoch: 10 });
    };
    const waits: number[] = [];
    const store = new KubeMembershipStore(api, 'vol-1', { backoff: async (n) => void waits.push(n) });
    const seen: number[] = [];
    const after = await store.update((m) => {
      seen.push(m.epoch);
      return bump(m);
    });
    expect(seen).toEqual([3, 10]);
    expect(after.epoch).toBe(11);
    expect(waits).toEqual([1]);
    expect(api.writes.map((w) => w.metadata.resourceVersion)).toEqual(['7', '8']);
  });

  it('gives up with a MembershipError after the last attempt loses', async () => {
    const api = new FakeVolumes(volume(attached()));
    api.interleave = () => api.writeStatus({ ...attached(), epoch: 5 });
    const store = new KubeMembershipStore(api, 'vol-1', { ...noWait, maxAttempts: 4 });
    await expect(store.update(bump)).rejects.toThrow(
      'volume vol-1: gave up after 4 updates lost to concurrent writers',
    );
    expect(api.writes).toHaveLength(4);
  });

  it.each<[string, (m: Membership) => Membership, RegExp]>([
    ['a lower epoch', (m) => ({ ...m, epoch: 2 }), /epoch 2 is lower than the stored 3/],
    [
      'three engines',
      (m) => ({ ...m, engines: ['a', 'b', 'c'].map((node) => ({ node, id: node })) }),
      /3 engines, at most 2 allowed/,
    ],
    [
      'duplicate engine ids',
      (m) => ({ ...m, engines: ['a', 'b'].map((node) => ({ node, id: 'one' })) }),
      /two engines with id one/,
    ],
    [
      'two replicas on one node',
      (m) => ({ ...m, replicas: [...m.replicas, { node: 'b', address: 'x:1', mode: 'Failed' }] }),
      /two replicas on node b/,
    ],
    [
      'an engine id of 254 characters',
      (m) => ({ ...m, engines: [{ node: 'a', id: 'i'.repeat(254) }] }),
      /1..253/,
    ],
    ['a new size', (m) => ({ ...m, sizeBytes: SIZE * 2 }), /sizeBytes is the volume's spec/],
  ])('refuses %s without writing', async (_what, change, message) => {
    const api = new FakeVolumes(volume(attached()));
    const store = new KubeMembershipStore(api, 'vol-1', noWait);
    await expect(store.update(change)).rejects.toThrow(message);
    expect(api.writes).toHaveLength(0);
  });

  it('lets an exception from the change through unchanged', async () => {
    const store = new KubeMembershipStore(new FakeVolumes(volume(attached())), 'vol-1', noWait);
    const mine = new Error('engine gave up');
    await expect(
      store.update(() => {
        throw mine;
      }),
    ).rejects.toBe(mine);
  });

  it('names a missing volume, an API refusal and a network failure', async () => {
    const api = new FakeVolumes(volume(attached()));
    const store = new KubeMembershipStore(api, 'vol-1', noWait);

    api.getError = apiError(404, 'volumes.tandem.dev "vol-1" not found');
    await expect(store.read()).rejects.toThrow(MembershipError);
    await expect(store.read()).rejects.toThrow('volume vol-1 not found');

    api.getError = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
    await expect(store.update(bump)).rejects.toThrow(
      'reading volume vol-1: connect ECONNREFUSED 127.0.0.1:6443',
    );

    api.getError = undefined;
    api.writeErrors = [apiError(404, 'gone')];
    await expect(store.update(bump)).rejects.toThrow('volume vol-1 not found');
    api.writeErrors = [apiError(422, 'status.epoch: Invalid value: "integer": the epoch can grow')];
    const refused = store.update(bump);
    await expect(refused).rejects.toThrow(MembershipError);
    await expect(refused).rejects.toThrow(
      'writing volume vol-1: HTTP 422: status.epoch: Invalid value: "integer": the epoch can grow',
    );
  });

  it('refuses to write without a resourceVersion, which would make the write unconditional', async () => {
    const store = new KubeMembershipStore(new FakeVolumes(volume(attached(), '')), 'vol-1', noWait);
    await expect(store.update(bump)).rejects.toThrow(/no resourceVersion/);
  });
});

describe('conflictBackoffMs', () => {
  it('stays within a doubling window capped at 100 ms', () => {
    expect(conflictBackoffMs(1, () => 0)).toBe(0);
    expect(conflictBackoffMs(1, () => 0.999)).toBe(9);
    expect(conflictBackoffMs(3, () => 0.999)).toBe(39);
    expect(conflictBackoffMs(30, () => 0.999)).toBe(99);
  });
});
