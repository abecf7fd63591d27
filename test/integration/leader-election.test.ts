import { CoordinationV1Api, CoreV1Api, V1MicroTime } from '@kubernetes/client-node';
import { type ElectionEnd, LeaderElection } from '../../lib/kube/leader-election.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';

/** Short timings so takeovers happen within seconds: 2 s lease, 1.5 s renew deadline, 0.2 s retry. */
const TIMINGS = { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 200 };

describe('LeaderElection on the real kube-apiserver', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const leases = kc.makeApiClient(CoordinationV1Api);
  const namespace = uniqueName('election');
  const elections: LeaderElection[] = [];

  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: namespace } } });
  });
  afterAll(async () => {
    for (const election of elections) await election.stop();
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  });

  interface Candidate {
    election: LeaderElection;
    leading: boolean;
    stoppedLeading: number;
    done: Promise<ElectionEnd>;
  }

  const candidate = (name: string, identity: string): Candidate => {
    const election = new LeaderElection({ kc, namespace, name, identity, ...TIMINGS });
    elections.push(election);
    const c = { election, leading: false, stoppedLeading: 0 } as Candidate;
    c.done = election.run({
      onStartedLeading: () => {
        c.leading = true;
      },
      onStoppedLeading: () => {
        c.leading = false;
        c.stoppedLeading++;
      },
    });
    return c;
  };

  const lease = (name: string) => leases.readNamespacedLease({ namespace, name });

  it('lets exactly one of two candidates lead, and hands over within seconds when it stops', async () => {
    const name = uniqueName('lease');
    const a = candidate(name, 'candidate-a');
    const b = candidate(name, 'candidate-b');
    const leader = await eventually(() => (a.leading ? a : b.leading ? b : undefined));
    const follower = leader === a ? b : a;
    // Several renewals later there is still one leader, and the Lease names it.
    await new Promise((r) => setTimeout(r, 3 * TIMINGS.retryPeriodMs + 500));
    expect([a.leading, b.leading].filter(Boolean)).toHaveLength(1);
    expect(leader.election.isLeader()).toBe(true);
    expect(follower.election.isLeader()).toBe(false);
    const held = await lease(name);
    expect(held.spec).toMatchObject({
      holderIdentity: leader.election.identity,
      leaseDurationSeconds: 2,
      leaseTransitions: 0,
    });
    expect(held.spec?.acquireTime).toBeDefined();
    expect(held.spec?.renewTime).toBeDefined();

    const stoppedAt = Date.now();
    await expect(leader.election.stop()).resolves.toBe('stopped');
    expect(leader.stoppedLeading).toBe(1);
    await eventually(() => (follower.leading ? true : undefined), 5000);
    // The lease was released, so the follower did not wait for it to expire.
    expect(Date.now() - stoppedAt).toBeLessThan(TIMINGS.leaseDurationMs);
    expect((await lease(name)).spec).toMatchObject({
      holderIdentity: follower.election.identity,
      leaseTransitions: 1,
    });
  });

  it('takes a Lease held by a dead holder once it has expired', async () => {
    const name = uniqueName('lease');
    const longAgo = new V1MicroTime(Date.now() - 3600_000);
    await leases.createNamespacedLease({
      namespace,
      body: {
        metadata: { name },
        spec: {
          holderIdentity: 'dead-pod',
          leaseDurationSeconds: 2,
          acquireTime: longAgo,
          renewTime: longAgo,
          leaseTransitions: 7,
        },
      },
    });
    const startedAt = Date.now();
    const c = candidate(name, 'survivor');
    await eventually(() => (c.leading ? true : undefined), 10_000);
    // Expiry is measured on the candidate's clock from when it first saw the record.
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(2000);
    expect((await lease(name)).spec).toMatchObject({ holderIdentity: 'survivor', leaseTransitions: 8 });
  });

  it('stops leading when another holder has written the Lease', async () => {
    const name = uniqueName('lease');
    const c = candidate(name, 'victim');
    await eventually(() => (c.leading ? true : undefined));
    const current = await lease(name);
    await leases.replaceNamespacedLease({
      namespace,
      name,
      body: {
        ...current,
        spec: { ...current.spec, holderIdentity: 'usurper', renewTime: new V1MicroTime() },
      },
    });
    await expect(c.done).resolves.toBe('lost');
    expect(c.stoppedLeading).toBe(1);
    expect(c.election.isLeader()).toBe(false);
    expect((await lease(name)).spec?.holderIdentity).toBe('usurper');
  });
});
