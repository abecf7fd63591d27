import { decideShare, type ShareState } from './share-manager-decide.js';

const NOW = 1_000_000;

const state = (over: Partial<ShareState> = {}): ShareState => ({
  volumeId: 'pvc-1',
  deleting: false,
  engineNodes: [],
  advertised: [],
  serviceExists: true,
  nowMs: NOW,
  nodeAlive: () => true,
  ...over,
});

const running = (nodeName = 'node-1') => ({
  name: 'share-manager-pvc-1',
  uid: 'uid-2',
  nodeName,
  phase: 'Running' as const,
  deleting: false,
});

describe('what the controller does for a share manager', () => {
  test('nothing yet: the Service and the Pod', () => {
    expect(decideShare(state({ serviceExists: false }))).toEqual([
      { kind: 'createService' },
      { kind: 'createPod' },
    ]);
  });

  test('scheduled: the engine moves to its node; once there, nothing more', () => {
    expect(decideShare(state({ pod: running('node-2'), engineNodes: ['node-1'] }))).toEqual([
      { kind: 'moveEngine', to: 'node-2' },
    ]);
    expect(decideShare(state({ pod: running('node-2'), engineNodes: ['node-2'] }))).toEqual([]);
  });

  test("unschedulable: a Warning with the scheduler's words and what to check, no engine anywhere", () => {
    const actions = decideShare(
      state({
        pod: {
          name: 'share-manager-pvc-1',
          uid: 'uid-2',
          phase: 'Pending',
          deleting: false,
          unschedulable: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector",
        },
      }),
    );
    expect(actions).toEqual([
      expect.objectContaining({
        kind: 'event',
        reason: 'ShareManagerUnschedulable',
        message: expect.stringMatching(/0\/3 nodes are available.*shareManagerNodeSelector/),
      }),
    ]);
  });

  test('a share manager that ended is replaced: endpoints cleared first, then the Pod, with the reason', () => {
    const actions = decideShare(
      state({ pod: { ...running(), phase: 'Failed' }, advertised: ['198.18.1.5'], engineNodes: ['node-1'] }),
    );
    expect(actions).toEqual([
      { kind: 'clearEndpoints' },
      {
        kind: 'deletePod',
        force: false,
        reason: 'the share manager share-manager-pvc-1 ended (Failed)',
        cause: 'ended',
      },
      expect.objectContaining({ reason: 'ShareManagerFailedOver' }),
    ]);
  });

  test("one that could not serve says why: its termination message is the Event's reason", () => {
    const message =
      'NFS-Ganesha exited during start (code 2): Error: Export Path (/export) is not a directory';
    const actions = decideShare(
      state({ pod: { ...running(), phase: 'Failed', exitMessage: message }, engineNodes: ['node-1'] }),
    );
    expect(actions).toContainEqual(
      expect.objectContaining({
        reason: 'ShareManagerFailedOver',
        message: expect.stringContaining(`ended (Failed): ${message}`),
      }),
    );
  });

  test('its node lost: deleted with force (no kubelet will confirm), its endpoint cleared', () => {
    const actions = decideShare(
      state({ pod: running('node-1'), advertised: ['198.18.1.5'], nodeAlive: (n) => n !== 'node-1' }),
    );
    expect(actions.slice(0, 2)).toEqual([
      { kind: 'clearEndpoints' },
      {
        kind: 'deletePod',
        force: true,
        reason: expect.stringMatching(/node node-1 is lost/),
        cause: 'node_lost',
      },
    ]);
  });

  test('heartbeat expired (fast failover): replaced within the lease, not after pod eviction', () => {
    const heartbeat = { holder: 'uid-2', leaseSeconds: 6, renewTimeMs: NOW - 9_000 };
    expect(decideShare(state({ pod: running(), heartbeat }))).toEqual([
      {
        kind: 'deletePod',
        force: true,
        reason: expect.stringMatching(/stopped renewing its heartbeat/),
        cause: 'heartbeat_expired',
      },
      expect.objectContaining({ reason: 'ShareManagerFailedOver' }),
    ]);
    // Within the lease plus slack: alive.
    expect(
      decideShare(
        state({
          pod: running(),
          heartbeat: { ...heartbeat, renewTimeMs: NOW - 7_000 },
          engineNodes: ['node-1'],
        }),
      ),
    ).toEqual([]);
  });

  test('a heartbeat left by a predecessor (same Pod name, other UID) does not condemn the new Pod while it starts', () => {
    const heartbeat = { holder: 'uid-1', leaseSeconds: 6, renewTimeMs: NOW - 60_000 };
    expect(decideShare(state({ pod: running(), heartbeat, engineNodes: ['node-1'] }))).toEqual([]);
  });

  test('a Pod on its way out: endpoints cleared, no successor until it is gone', () => {
    expect(decideShare(state({ pod: { ...running(), deleting: true }, advertised: ['198.18.1.5'] }))).toEqual(
      [{ kind: 'clearEndpoints' }],
    );
    expect(decideShare(state({ pod: { ...running(), deleting: true } }))).toEqual([]);
  });

  test('the Pod gone but its endpoint still advertised: cleared, and a new Pod', () => {
    expect(decideShare(state({ advertised: ['198.18.1.5'] }))).toEqual([
      { kind: 'clearEndpoints' },
      { kind: 'createPod' },
    ]);
  });

  test('the volume being deleted: everything goes', () => {
    expect(decideShare(state({ deleting: true, pod: running() }))).toEqual([{ kind: 'deleteAll' }]);
  });
});
