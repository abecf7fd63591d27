/**
 * ControllerPublishVolume, ControllerUnpublishVolume and DeleteVolume for a ReadWriteMany
 * Filesystem volume. No engine runs on a client's node: the one engine is the share manager's,
 * placed by the reconciler. Publishing on a node waits until the share manager serves (its
 * EndpointSlice advertises it) and hands the node the Service's address and the class's mount
 * options; unpublishing has nothing to undo; deleting removes the share manager's objects and its
 * engine before the Volume.
 */
import type { Volume } from '../../lib/api/volume.js';
import { failedPrecondition, unavailable } from '../csi/errors.js';
import { NFS_OPTIONS_KEY, NFS_SERVER_KEY } from '../csi/publish-context.js';
import type { RpcContext } from '../csi/rpc.js';
import { type ControllerCluster, updateVolume } from './cluster.js';
import { waitForEngineGone } from './engine-wait.js';
import type { ShareCluster } from './share-cluster.js';

export interface SharePublishDeps {
  cluster: ControllerCluster;
  shares?: ShareCluster;
  engineWaitMs?: number;
  pollMs?: number;
}

export async function publishShare(
  deps: SharePublishDeps,
  volume: Volume,
  signal: AbortSignal,
): Promise<{ publish_context: Record<string, string> }> {
  const id = volume.metadata.name;
  const share = volume.spec.share;
  if (deps.shares === undefined || share === undefined)
    throw failedPrecondition(
      `volume ${id} is served over NFS, and this controller runs without share managers`,
    );
  const deadline = Date.now() + (deps.engineWaitMs ?? 60_000);
  for (;;) {
    const objects = await deps.shares.readShare(id);
    const server = objects.service?.clusterIP;
    if (objects.advertised.length > 0 && server && server !== 'None')
      return { publish_context: { [NFS_SERVER_KEY]: server, [NFS_OPTIONS_KEY]: share.nfsOptions } };
    if (signal.aborted || Date.now() >= deadline) {
      const pod = objects.pod;
      const where = pod
        ? `its Pod ${pod.name} is ${pod.phase}${pod.nodeName ? ` on ${pod.nodeName}` : ' and not scheduled'}${pod.unschedulable ? ` (${pod.unschedulable})` : ''}`
        : 'its Pod does not exist yet';
      throw unavailable(
        `the share manager of volume ${id} does not serve yet: ${where}; see the claim's Events and the Pod's log in Tandem's namespace`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, deps.pollMs ?? 250));
  }
}

/**
 * Before the Volume goes: the share manager's objects, then its engine (stopped, or struck when
 * its node is lost), so no engine of a deleted volume keeps running anywhere.
 */
export async function deleteShare(
  deps: SharePublishDeps,
  volume: Volume,
  context: RpcContext,
): Promise<void> {
  const id = volume.metadata.name;
  await deps.shares?.deleteShareObjects(id);
  const engines = (volume.spec.engines ?? []).map((e) => e.node);
  if (engines.length === 0) return;
  await updateVolume(
    deps.cluster,
    id,
    (fresh) => {
      if ((fresh.spec.engines ?? []).length === 0) return undefined;
      fresh.spec.engines = [];
      return fresh;
    },
    'spec',
  );
  for (const node of engines) await waitForEngineGone(deps, id, node, context);
  context.logger.info({ volume: id }, 'share manager and its engine removed');
}
