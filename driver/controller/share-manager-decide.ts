/**
 * What the controller does next for one RWX Filesystem volume's share manager, decided from what
 * the cluster holds (level-triggered: the same state always gives the same answer, so a
 * restarted controller carries on where its predecessor stopped). The reconciler that reads the
 * state and carries the actions out is not built yet (docs/rwx-nfs.md); this is its decision.
 *
 * The share manager's Pod never restarts in place (restartPolicy Never), so every replacement
 * goes through here: a Pod that ended, one whose heartbeat expired (fast failover's seconds, not
 * pod eviction's minutes), or one on a node whose data plane is lost is deleted — with force
 * when its node is lost, since no kubelet there will confirm — and its EndpointSlice emptied so
 * no client is sent to it; a new Pod follows, and the engine moves to wherever the scheduler
 * puts it (ControllerUnpublish's rules: a lost node's engine is struck with a new epoch, so it is
 * fenced before the new one writes).
 */

export interface SharePodState {
  name: string;
  /** Unique per incarnation (the name is not: every share manager of a volume has the same one). */
  uid: string;
  nodeName?: string;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';
  deleting: boolean;
  /** The scheduler's reason when PodScheduled is False (no node matches, taints, ...). */
  unschedulable?: string;
  /** What the share manager said as it ended (its termination message: why it could not serve). */
  exitMessage?: string;
}

export interface HeartbeatState {
  /** The UID of the Pod that renews it (the share manager's --identity). */
  holder: string;
  renewTimeMs: number;
  leaseSeconds: number;
}

export interface ShareState {
  volumeId: string;
  deleting: boolean;
  /** Nodes the Volume's spec asks engines on. */
  engineNodes: readonly string[];
  pod?: SharePodState;
  heartbeat?: HeartbeatState;
  /** Addresses the EndpointSlice advertises as ready. */
  advertised: readonly string[];
  serviceExists: boolean;
  nowMs: number;
  /** Whether the data plane of a node still renews its registration. */
  nodeAlive: (node: string) => boolean;
}

export type ShareAction =
  | { kind: 'createService' }
  | { kind: 'createPod' }
  | { kind: 'deletePod'; force: boolean; reason: string; cause?: FailoverCause }
  | { kind: 'clearEndpoints' }
  | { kind: 'moveEngine'; to: string }
  | { kind: 'releaseEngine' }
  | { kind: 'deleteAll' }
  | { kind: 'event'; type: 'Normal' | 'Warning'; reason: ShareEventReason; message: string };

export type ShareEventReason = 'ShareManagerFailedOver' | 'ShareManagerUnschedulable';

/** Why a share manager is replaced: its Pod ended, its node is lost, or its heartbeat stopped. */
export type FailoverCause = 'ended' | 'node_lost' | 'heartbeat_expired';

/** Grace on top of the Lease's duration before a missed heartbeat counts (clock skew, API latency). */
const HEARTBEAT_SLACK_MS = 2_000;

function heartbeatExpired(pod: SharePodState, heartbeat: HeartbeatState | undefined, nowMs: number): boolean {
  // Only a heartbeat this Pod took counts: before it serves, it has none (starting is not dying).
  if (heartbeat === undefined || heartbeat.holder !== pod.uid) return false;
  return nowMs > heartbeat.renewTimeMs + heartbeat.leaseSeconds * 1000 + HEARTBEAT_SLACK_MS;
}

/** Why the current Pod must be replaced, or undefined when it may go on. */
function replacementReason(
  state: ShareState,
  pod: SharePodState,
): { reason: string; force: boolean; cause: FailoverCause } | undefined {
  if (pod.phase === 'Failed' || pod.phase === 'Succeeded')
    return {
      reason: `the share manager ${pod.name} ended (${pod.phase})${pod.exitMessage ? `: ${pod.exitMessage}` : ''}`,
      force: false,
      cause: 'ended',
    };
  if (pod.nodeName !== undefined && !state.nodeAlive(pod.nodeName))
    return {
      reason: `node ${pod.nodeName} is lost (its data plane stopped renewing its registration)`,
      force: true,
      cause: 'node_lost',
    };
  if (heartbeatExpired(pod, state.heartbeat, state.nowMs))
    return {
      reason: `the share manager ${pod.name} stopped renewing its heartbeat`,
      force: true,
      cause: 'heartbeat_expired',
    };
  return undefined;
}

export function decideShare(state: ShareState): ShareAction[] {
  if (state.deleting) return [{ kind: 'deleteAll' }];
  const actions: ShareAction[] = [];
  if (!state.serviceExists) actions.push({ kind: 'createService' });
  const pod = state.pod;
  if (pod === undefined) {
    if (state.advertised.length > 0) actions.push({ kind: 'clearEndpoints' });
    actions.push({ kind: 'createPod' });
    return actions;
  }
  if (pod.deleting) {
    // On its way out: nobody may be sent there; its successor is made once it is gone.
    if (state.advertised.length > 0) actions.push({ kind: 'clearEndpoints' });
    return actions;
  }
  const replace = replacementReason(state, pod);
  if (replace !== undefined) {
    if (state.advertised.length > 0) actions.push({ kind: 'clearEndpoints' });
    actions.push({ kind: 'deletePod', force: replace.force, reason: replace.reason, cause: replace.cause });
    actions.push({
      kind: 'event',
      type: 'Warning',
      reason: 'ShareManagerFailedOver',
      message: `${replace.reason}; a new share manager replaces it`,
    });
    return actions;
  }
  if (pod.nodeName === undefined) {
    if (pod.unschedulable !== undefined)
      actions.push({
        kind: 'event',
        type: 'Warning',
        reason: 'ShareManagerUnschedulable',
        message: `no node may host the share manager of volume ${state.volumeId}: ${pod.unschedulable} (check the class's shareManagerNodeSelector, shareManagerTolerations and allowedTopologies)`,
      });
    return actions;
  }
  // Scheduled: the engine belongs on the share manager's node, and only there.
  if (state.engineNodes.length !== 1 || state.engineNodes[0] !== pod.nodeName)
    actions.push({ kind: 'moveEngine', to: pod.nodeName });
  return actions;
}
