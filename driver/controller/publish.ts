/**
 * ControllerPublishVolume / ControllerUnpublishVolume: the nodes that should run an engine are
 * `spec.engines` of the Volume; the node's data plane starts or stops the engine, and the engine
 * registers itself in `status.engines`. Publish returns once that engine holds its place (and its
 * epoch) in the membership, unpublish once it is gone. Its NBD socket answers a moment after it
 * registers; NodeStageVolume waits for that, so a pod never opens the device before I/O can flow.
 */
import type { MigrationRecord, Volume } from '../../lib/api/volume.js';
import { failedPrecondition, invalidArgument, notFound, unavailable } from '../csi/errors.js';
import type { RpcContext } from '../csi/rpc.js';
import { isAlive } from '../dataplane/node-registration.js';
import { type CsiVolumeCapability, validateVolumeCapabilities } from './capabilities.js';
import { type ControllerCluster, updateVolume } from './cluster.js';
import { waitForEngine, waitForEngineGone } from './engine-wait.js';
import {
  checkMigrationGuard,
  decideOnUnpublish,
  migrationRecordFor,
  startMigrationRecord,
} from './migration-record.js';
import { checkMigrationPods } from './pod-identity.js';
import type { ShareCluster } from './share-cluster.js';
import { publishShare } from './share-publish.js';

export interface PublishDeps {
  cluster: ControllerCluster;
  /** The share managers' objects; without it, RWX Filesystem volumes cannot be published. */
  shares?: ShareCluster;
  /** How long a call waits for the engine before answering UNAVAILABLE (the attacher retries). */
  engineWaitMs?: number;
  pollMs?: number;
}

export interface ControllerPublishVolumeRequest {
  volume_id: string;
  node_id: string;
  volume_capability?: CsiVolumeCapability | null;
  readonly?: boolean;
  volume_context?: Record<string, string>;
}

const MAX_ENGINES = 2;

export async function controllerPublishVolume(
  deps: PublishDeps,
  request: ControllerPublishVolumeRequest,
  context: RpcContext,
): Promise<{ publish_context: Record<string, string> }> {
  const { volume_id: id, node_id: node } = request;
  if (!id) throw invalidArgument('volume_id is empty');
  if (!node) throw invalidArgument('node_id is empty');
  if (!request.volume_capability) throw invalidArgument('volume_capability is missing');
  const { cluster } = deps;
  // Independent reads, in parallel: each is a round trip to the API.
  const [volume, registrations] = await Promise.all([cluster.getVolume(id), cluster.listNodes()]);
  if (volume === undefined || volume.metadata.deletionTimestamp)
    throw notFound(`volume ${id} does not exist`);
  const check = validateVolumeCapabilities([request.volume_capability], volume);
  if (!check.confirmed) throw invalidArgument(check.message);

  // Served over NFS: the client's node gets the share manager's address, not an engine.
  if (volume.spec.share !== undefined) return publishShare(deps, volume, context.signal);

  const target = registrations.find((r) => r.node === node);
  if (target === undefined)
    throw notFound(
      `node ${node} runs no Tandem data plane (no registration Lease); is tandem-dataplane scheduled there?`,
    );

  const engines = (volume.spec.engines ?? []).map((e) => e.node);
  checkMigrationGuard(volume, node);
  if (!engines.includes(node)) {
    if (!isAlive(target))
      throw unavailable(
        `the data plane on node ${node} has stopped renewing its registration; cannot start an engine there`,
      );
    const record = await admitNewEngine(deps, volume, node, engines);
    // The record is written before the engine is asked for, so a migration never runs unrecorded;
    // a record whose target never got its engine ends by the migrator's timeout.
    const recorded =
      record === undefined ? volume : await startMigrationRecord(cluster, id, record, context, volume);
    await updateVolume(
      cluster,
      id,
      (fresh) => {
        const current = (fresh.spec.engines ?? []).map((e) => e.node);
        if (current.includes(node)) return undefined;
        // Re-checked on the fresh copy: a concurrent publish to another node may have won.
        if (current.length > 0 && !fresh.spec.migratable)
          throw failedPrecondition(publishedElsewhere(id, current, fresh));
        if (current.length >= MAX_ENGINES) throw failedPrecondition(tooManyEngines(id, current));
        fresh.spec.engines = [...(fresh.spec.engines ?? []), { node }];
        return fresh;
      },
      'spec',
      recorded,
    );
    context.logger.info({ volume: id, node, engines: [...engines, node] }, 'engine requested');
  }
  await waitForEngine(deps, id, node, context.signal, true);
  return { publish_context: {} };
}

/** The rules for adding an engine to a volume that may already have one. */
async function admitNewEngine(
  deps: PublishDeps,
  volume: Volume,
  node: string,
  engines: string[],
): Promise<MigrationRecord | undefined> {
  const id = volume.metadata.name;
  if (engines.length === 0) return undefined;
  if (!volume.spec.migratable) throw failedPrecondition(publishedElsewhere(id, engines, volume));
  if (engines.length >= MAX_ENGINES) throw failedPrecondition(tooManyEngines(id, engines));
  // Defence in depth behind the webhook: only the pods of one VM may make a second engine.
  const pods = await deps.cluster.podsUsingVolume(id);
  const problem = checkMigrationPods(pods, [...engines, node]);
  if (problem) throw failedPrecondition(`volume ${id}: ${problem}`);
  return migrationRecordFor(engines[0] as string, node, pods ?? []);
}

function publishedElsewhere(id: string, engines: string[], volume: Volume): string {
  return `volume ${id} (${volume.spec.accessMode} ${volume.spec.volumeMode}) is already published on node ${engines.join(', ')}; only migratable ReadWriteMany Block volumes are published on two nodes. Stop the pod using it there first`;
}

function tooManyEngines(id: string, engines: string[]): string {
  return `volume ${id} already has engines on ${engines.join(' and ')} (a live migration in progress); at most ${MAX_ENGINES}`;
}

export interface ControllerUnpublishVolumeRequest {
  volume_id: string;
  node_id: string;
}

export async function controllerUnpublishVolume(
  deps: PublishDeps,
  request: ControllerUnpublishVolumeRequest,
  context: RpcContext,
): Promise<Record<string, never>> {
  const { volume_id: id, node_id: node } = request;
  if (!id) throw invalidArgument('volume_id is empty');
  const { cluster } = deps;
  const volume = await cluster.getVolume(id);
  if (volume === undefined) return {};
  // Nothing per node: the share manager's engine stays until the volume is deleted.
  if (volume.spec.share !== undefined) return {};
  const wanted = (volume.spec.engines ?? []).map((e) => e.node);
  // An empty node_id means every node (CSI: the CO does not know where it is published).
  const leaving = node ? [node] : wanted;
  if (node && wanted.includes(node)) await decideOnUnpublish(cluster, id, node, context);
  if (leaving.some((n) => wanted.includes(n))) {
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
    context.logger.info({ volume: id, nodes: leaving }, 'engine removal requested');
  }
  for (const n of leaving) await waitForEngineGone(deps, id, n, context);
  return {};
}
