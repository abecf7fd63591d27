/**
 * Waiting for an engine the data plane starts or stops after spec.engines changed: what
 * ControllerPublish/Unpublish and the share manager's engine moves wait for.
 */
import { notFound, unavailable } from '../csi/errors.js';
import type { RpcContext } from '../csi/rpc.js';
import { isAlive } from '../dataplane/node-registration.js';
import { type ControllerCluster, updateVolume } from './cluster.js';

export interface EngineWaitDeps {
  cluster: ControllerCluster;
  /** How long to wait for the engine before answering UNAVAILABLE. */
  engineWaitMs?: number;
  pollMs?: number;
}

/**
 * Waits until the node's engine has left. A node whose data plane stopped renewing its Lease
 * cannot stop anything: its engine is struck from status.engines with a new epoch instead, so
 * the next engine's takeover fences whatever the lost one might still send.
 */
export async function waitForEngineGone(
  deps: EngineWaitDeps,
  id: string,
  node: string,
  context: RpcContext,
): Promise<void> {
  const record = (await deps.cluster.listNodes()).find((r) => r.node === node);
  if (record !== undefined && isAlive(record)) {
    await waitForEngine(deps, id, node, context.signal, false);
    return;
  }
  await updateVolume(
    deps.cluster,
    id,
    (fresh) => {
      const engines = fresh.status?.engines ?? [];
      if (!engines.some((e) => e.node === node)) return undefined;
      fresh.status = {
        ...fresh.status,
        engines: engines.filter((e) => e.node !== node),
        epoch: (fresh.status?.epoch ?? 0) + 1,
      };
      return fresh;
    },
    'status',
  );
  context.logger.warn({ volume: id, node }, 'engine of a lost node struck from the volume with a new epoch');
}

export async function waitForEngine(
  deps: EngineWaitDeps,
  id: string,
  node: string,
  signal: AbortSignal,
  present: boolean,
): Promise<void> {
  const deadline = Date.now() + (deps.engineWaitMs ?? 60_000);
  const poll = deps.pollMs ?? 50;
  for (;;) {
    const volume = await deps.cluster.getVolume(id);
    if (volume === undefined) {
      if (present) throw notFound(`volume ${id} was deleted`);
      return;
    }
    const has = (volume.status?.engines ?? []).some((e) => e.node === node);
    if (has === present) return;
    if (signal.aborted || Date.now() >= deadline)
      throw unavailable(
        present
          ? `the engine of volume ${id} on node ${node} is not serving yet; the data plane there starts it (see its log)`
          : `the engine of volume ${id} on node ${node} has not stopped yet`,
      );
    await new Promise((resolve) => setTimeout(resolve, poll));
  }
}
