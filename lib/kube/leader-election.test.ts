import { ApiException, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import { type ElectionEnd, LeaderElection, type LeaseApi } from './leader-election.js';

/**
 * An in-memory Lease store with the apiserver's optimistic concurrency: every write bumps the
 * resourceVersion, and a replace carrying an older one fails with 409. `mode` makes every call
 * fail or hang, as an unreachable apiserver would.
 */
class FakeLeaseApi implements LeaseApi {
  lease: V1Lease | undefined;
  version = 0;
  mode: 'ok' | 'fail' | 'hang' = 'ok';
  writes = 0;

  async get(): Promise<V1Lease | undefined> {
    await this.gate();
    return this.lease && structuredClone(this.lease);
  }

  async create(_namespace: string, lease: V1Lease): Promise<V1Lease> {
    await this.gate();
    if (this.lease) throw new ApiException(409, 'AlreadyExists', {}, {});
    return this.store(lease);
  }

  async replace(_namespace: string, _name: string, lease: V1Lease): Promise<V1Lease> {
    await this.gate();
    if (!this.lease) throw new ApiException(404, 'NotFound', {}, {});
    if (lease.metadata?.resourceVersion !== this.lease.metadata?.resourceVersion)
      throw new ApiException(409, 'Conflict', {}, {});
    return this.store(lease);
  }

  /** Writes as another party would (bypassing the election), e.g. a holder that then dies. */
  put(spec: V1Lease['spec']): void {
    this.store({ metadata: { name: 'lease', namespace: 'ns' }, spec });
  }

  private store(lease: V1Lease): V1Lease {
    this.writes++;
    // What the apiserver returns: times as strings, a new resourceVersion.
    const stored = JSON.parse(JSON.stringify(lease)) as V1Lease;
    stored.metadata = { ...stored.metadata, resourceVersion: String(++this.version) };
    this.lease = stored;
    return structuredClone(stored);
  }

  private async gate(): Promise<void> {
    if (this.mode === 'fail') throw new Error('connect ECONNREFUSED');
    if (this.mode === 'hang') await new Promise(() => {});
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(5);
  }
}

/** Fast timings: whole-second lease (the Lease stores seconds), short deadline and retry. */
const TIMINGS = { leaseDurationMs: 1000, renewDeadlineMs: 300, retryPeriodMs: 50 };

interface Candidate {
  election: LeaderElection;
  started: number;
  stoppedLeading: number;
  signal: AbortSignal | undefined;
  done: Promise<ElectionEnd>;
}

function candidate(api: LeaseApi, identity: string, timings = TIMINGS): Candidate {
  const election = new LeaderElection({ api, namespace: 'ns', name: 'lease', identity, ...timings });
  const c: Candidate = {
    election,
    started: 0,
    stoppedLeading: 0,
    signal: undefined,
    done: undefined as never,
  };
  c.done = election.run({
    onStartedLeading: (signal) => {
      c.started++;
      c.signal = signal;
    },
    onStoppedLeading: () => {
      c.stoppedLeading++;
    },
  });
  return c;
}

const running: Candidate[] = [];
afterEach(async () => {
  for (const c of running.splice(0)) await c.election.stop();
});
function start(api: LeaseApi, identity: string, timings = TIMINGS): Candidate {
  const c = candidate(api, identity, timings);
  running.push(c);
  return c;
}

describe('LeaderElection', () => {
  it('creates a missing Lease naming itself as holder and leads', async () => {
    const api = new FakeLeaseApi();
    const a = start(api, 'a');
    await until(() => a.election.isLeader());
    expect(a.started).toBe(1);
    expect(api.lease?.spec).toMatchObject({
      holderIdentity: 'a',
      leaseDurationSeconds: 1,
      leaseTransitions: 0,
    });
    // Times are written with microsecond precision, as the apiserver's MicroTime requires.
    expect(String(api.lease?.spec?.acquireTime)).toMatch(/\.\d{6}Z$/);
    expect(String(api.lease?.spec?.renewTime)).toMatch(/\.\d{6}Z$/);
  });

  it('renews while leading, keeping acquireTime and the transition count', async () => {
    const api = new FakeLeaseApi();
    const a = start(api, 'a');
    await until(() => a.election.isLeader());
    const first = structuredClone(api.lease?.spec);
    await until(() => api.lease?.spec?.renewTime !== first?.renewTime);
    expect(api.lease?.spec?.acquireTime).toBe(first?.acquireTime);
    expect(api.lease?.spec?.leaseTransitions).toBe(0);
    expect(a.election.isLeader()).toBe(true);
  });

  it('lets exactly one of two candidates lead, and hands over at once when the leader stops', async () => {
    const api = new FakeLeaseApi();
    const a = start(api, 'a');
    const b = start(api, 'b');
    await until(() => a.election.isLeader() || b.election.isLeader());
    await sleep(200);
    const [leader, follower] = a.election.isLeader() ? [a, b] : [b, a];
    expect(follower.election.isLeader()).toBe(false);
    expect(follower.started).toBe(0);
    expect(api.lease?.spec?.holderIdentity).toBe(leader.election.identity);

    const stoppedAt = Date.now();
    await expect(leader.election.stop()).resolves.toBe('stopped');
    expect(leader.signal?.aborted).toBe(true);
    expect(leader.stoppedLeading).toBe(1);
    expect(leader.election.isLeader()).toBe(false);
    // Released, so the follower need not wait the lease duration (1 s).
    await until(() => follower.election.isLeader());
    expect(Date.now() - stoppedAt).toBeLessThan(TIMINGS.leaseDurationMs);
    expect(api.lease?.spec).toMatchObject({
      holderIdentity: follower.election.identity,
      leaseTransitions: 1,
    });
  });

  it('releases the Lease on stop: holder emptied, transitions kept', async () => {
    const api = new FakeLeaseApi();
    const a = start(api, 'a');
    await until(() => a.election.isLeader());
    await a.election.stop();
    expect(api.lease?.spec?.holderIdentity).toBe('');
    expect(api.lease?.spec?.leaseTransitions).toBe(0);
  });

  it('takes a Lease left by a dead holder only after the lease duration, counting a transition', async () => {
    const api = new FakeLeaseApi();
    const renewTime = new V1MicroTime(Date.now() - 60_000);
    api.put({ holderIdentity: 'dead', leaseDurationSeconds: 1, leaseTransitions: 4, renewTime });
    const startedAt = Date.now();
    const a = start(api, 'a');
    await sleep(500);
    // The old renewTime is not trusted (clocks differ): expiry is measured from first sight.
    expect(a.election.isLeader()).toBe(false);
    await until(() => a.election.isLeader());
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(1000);
    expect(api.lease?.spec).toMatchObject({ holderIdentity: 'a', leaseTransitions: 5 });
  });

  it('waits while the holder keeps renewing', async () => {
    const api = new FakeLeaseApi();
    api.put({ holderIdentity: 'alive', leaseDurationSeconds: 1, leaseTransitions: 0 });
    const timer = setInterval(() => {
      // The live holder renews: a new resourceVersion restarts the candidate's expiry clock.
      if (api.lease?.spec) api.put({ ...api.lease.spec, renewTime: new V1MicroTime() });
    }, 200);
    try {
      const a = start(api, 'a');
      await sleep(1600);
      expect(a.election.isLeader()).toBe(false);
      expect(api.lease?.spec?.holderIdentity).toBe('alive');
      expect(a.election.observedLeader()).toBe('alive');
    } finally {
      clearInterval(timer);
    }
  });

  it('takes a released Lease (empty holder) without waiting', async () => {
    const api = new FakeLeaseApi();
    api.put({ holderIdentity: '', leaseDurationSeconds: 15, leaseTransitions: 2 });
    const a = start(api, 'a');
    await until(() => a.election.isLeader(), 300);
    expect(api.lease?.spec?.leaseTransitions).toBe(3);
  });

  it.each(['fail', 'hang'] as const)(
    'stops leading when the apiserver calls %s past the renew deadline, without releasing',
    async (mode) => {
      const api = new FakeLeaseApi();
      const a = start(api, 'a');
      await until(() => a.election.isLeader());
      api.mode = mode;
      const brokenAt = Date.now();
      await expect(a.done).resolves.toBe('lost');
      const elapsed = Date.now() - brokenAt;
      expect(elapsed).toBeGreaterThanOrEqual(TIMINGS.renewDeadlineMs - TIMINGS.retryPeriodMs);
      // Bounded: it gives up around the renew deadline, not at some later lease expiry.
      expect(elapsed).toBeLessThan(TIMINGS.leaseDurationMs);
      expect(a.stoppedLeading).toBe(1);
      expect(a.signal?.aborted).toBe(true);
      expect(a.election.isLeader()).toBe(false);
      expect(api.lease?.spec?.holderIdentity).toBe('a');
    },
  );

  it('survives a short outage shorter than the renew deadline', async () => {
    const api = new FakeLeaseApi();
    const a = start(api, 'a');
    await until(() => a.election.isLeader());
    api.mode = 'fail';
    await sleep(TIMINGS.renewDeadlineMs / 3);
    api.mode = 'ok';
    await sleep(TIMINGS.renewDeadlineMs);
    expect(a.election.isLeader()).toBe(true);
    expect(a.stoppedLeading).toBe(0);
  });

  it('stops leading at once when another candidate has taken the Lease', async () => {
    const api = new FakeLeaseApi();
    const a = start(api, 'a');
    await until(() => a.election.isLeader());
    api.put({ ...api.lease?.spec, holderIdentity: 'usurper' });
    await expect(a.done).resolves.toBe('lost');
    expect(a.stoppedLeading).toBe(1);
    expect(api.lease?.spec?.holderIdentity).toBe('usurper');
  });

  it('lets only one of many racing candidates create the Lease', async () => {
    const api = new FakeLeaseApi();
    const all = ['a', 'b', 'c', 'd'].map((id) => start(api, id));
    await until(() => all.some((c) => c.election.isLeader()));
    await sleep(200);
    expect(all.filter((c) => c.election.isLeader())).toHaveLength(1);
    expect(all.reduce((n, c) => n + c.started, 0)).toBe(1);
  });

  it('stop() before leading ends the campaign without callbacks', async () => {
    const api = new FakeLeaseApi();
    api.put({ holderIdentity: 'other', leaseDurationSeconds: 15 });
    const a = start(api, 'a');
    await sleep(100);
    await expect(a.election.stop()).resolves.toBe('stopped');
    expect(a.started).toBe(0);
    expect(a.stoppedLeading).toBe(0);
    expect(api.lease?.spec?.holderIdentity).toBe('other');
  });

  it('refuses inconsistent timings', () => {
    const api = new FakeLeaseApi();
    const base = { api, namespace: 'ns', name: 'lease', identity: 'a' };
    expect(
      () => new LeaderElection({ ...base, leaseDurationMs: 1000, renewDeadlineMs: 1000, retryPeriodMs: 100 }),
    ).toThrow(/leaseDurationMs/);
    expect(() => new LeaderElection({ ...base, renewDeadlineMs: 1000, retryPeriodMs: 900 })).toThrow(
      /renewDeadlineMs/,
    );
    expect(() => new LeaderElection({ ...base, identity: '' })).toThrow(/identity/);
  });
});
