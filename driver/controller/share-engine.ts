/**
 * Moves an RWX Filesystem volume's one engine to the node its share manager was scheduled on,
 * with ControllerUnpublish's and ControllerPublish's rules (the share manager is the volume's only
 * user, so the controller publishes on its behalf): the old engine is removed and waited for,
 * or struck with a new epoch when its node is lost, before the new one is asked for; so the old
 * one is fenced before the new one writes.
 */
import type { Logger } from '../../lib/log.js';
import { type ControllerCluster, updateVolume } from './cluster.js';
import { waitForEngine, waitForEngineGone } from './engine-wait.js';

export async function moveShareEngine(
  cluster: ControllerCluster,
  id: string,
  to: string,
  log: Logger,
  engineWaitMs = 60_000,
): Promise<void> {
  const deps = { cluster, engineWaitMs };
  const context = { logger: log, signal: AbortSignal.timeout(engineWaitMs * 2) };
  const volume = await cluster.getVolume(id);
  if (volume === undefined) return;
  const leaving = (volume.spec.engines ?? []).map((e) => e.node).filter((node) => node !== to);
  if (leaving.length > 0) {
    await updateVolume(
      cluster,
      id,
      (fresh) => {
        const engines = fresh.spec.engines ?? [];
        if (!engines.some((e) => leaving.includes(e.node))) return undefined;
        fresh.spec.engines = engines.filter((e) => !leaving.includes(e.node));
        return fresh;
      },
      'spec',
    );
    for (const node of leaving) await waitForEngineGone(deps, id, node, context);
  }
  await updateVolume(
    cluster,
    id,
    (fresh) => {
      if ((fresh.spec.engines ?? []).some((e) => e.node === to)) return undefined;
      fresh.spec.engines = [{ node: to }];
      return fresh;
    },
    'spec',
  );
  await waitForEngine(deps, id, to, context.signal, true);
}
