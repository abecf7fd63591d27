/**
 * The share manager of one RWX volume: the volume's block device on this node (through the
 * engine the controller asked the data plane for here, attached exactly as the node plugin's
 * NodeStageVolume attaches it: the same code), its filesystem formatted on first use and
 * mounted, and NFS-Ganesha exporting a directory of it. The layout on the volume:
 *
 *   export/               what clients see (mode 1777 owner root: any pod uid may create files)
 *   .tandem/nfs-recovery  Ganesha's client records (fs_ng), beside the export, never inside it
 *
 * Once Ganesha serves, the endpoint is published (the EndpointSlice behind the volume's Service);
 * stop() withdraws it first, so clients are never pointed at a server that is going away.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../lib/log.js';
import { engineSocketPath } from '../csi/node-topology.js';
import { probeExportSizes } from '../nbd/probe.js';
import { nodeExpandVolume } from '../node/expand.js';
import type { FsType } from '../node/filesystem.js';
import type { Frontend, NodeOps } from '../node/node-ops.js';
import { nodeEnv } from '../node/service.js';
import { nodeStageVolume, nodeUnstageVolume } from '../node/stage.js';
import { DEBIAN_GANESHA_PLUGINS, failoverTimings } from './ganesha-config.js';
import { PrivateBus } from './ganesha-dbus.js';
import { RunningGanesha } from './ganesha-process.js';
import { GrowthWatch } from './grow.js';
import { releaseDeadShares } from './sweep.js';

export const NFS_PORT = 2049;

/** Where a share manager is reachable; the controller's Service routes clients there. */
export interface ShareEndpointAddress {
  address: string;
  port: number;
}

/** The cluster side of a share manager (EndpointSlice, heartbeat); tests may leave it out. */
export interface ShareEndpoint {
  publish(address: ShareEndpointAddress): Promise<void>;
  withdraw(): Promise<void>;
}

export interface ShareManagerOptions {
  volumeId: string;
  nodeId: string;
  /** Per-volume state lives in `<stateDir>/<volume>/`: attachment records, the mount, Ganesha's run files. */
  stateDir: string;
  engineSocketDir: string;
  frontend: Frontend;
  /** The address Ganesha listens on: the pod's (or the node's) address clients reach. */
  bindAddress: string;
  port?: number;
  fsType: FsType;
  fastFailover: boolean;
  endpoint?: ShareEndpoint;
  logger: Logger;
  /** How long to wait for the engine the controller asked for here. */
  engineWaitMs?: number;
  ganeshaBinary?: string;
  /** How often the engine is asked whether the volume grew (default 10 s). */
  growCheckMs?: number;
  /** Replaces the real attach/mount layer (unit tests). */
  ops?: NodeOps;
}

/**
 * The hostname Ganesha runs under, derived from the volume alone: every share manager of the
 * volume, on any node, finds the client records the previous one left (fs_ng keys them by it).
 */
export function ganeshaIdentity(volumeId: string): string {
  return `tandem-nfs-${createHash('sha256').update(volumeId).digest('hex').slice(0, 16)}`;
}

export function shareLayout(stateDir: string, volumeId: string) {
  const base = join(stateDir, volumeId);
  const mount = join(base, 'volume');
  return {
    nodeStateDir: join(base, 'node'),
    mount,
    exportPath: join(mount, 'export'),
    recoveryRoot: join(mount, '.tandem', 'nfs-recovery'),
    runDir: join(base, 'ganesha'),
  };
}

type ReleaseOptions = Pick<
  ShareManagerOptions,
  'volumeId' | 'nodeId' | 'stateDir' | 'engineSocketDir' | 'frontend' | 'logger' | 'engineWaitMs' | 'ops'
>;

function shareNodeEnv(options: ReleaseOptions) {
  return nodeEnv({
    nodeId: options.nodeId,
    stateDir: shareLayout(options.stateDir, options.volumeId).nodeStateDir,
    engineSocketDir: options.engineSocketDir,
    frontend: options.frontend,
    engineWaitMs: options.engineWaitMs ?? 60_000,
    ops: options.ops,
  });
}

/**
 * Unmounts and detaches what a share manager of this volume left on this node (nothing when it
 * stopped cleanly). Only safe when no Ganesha of this volume runs here: each share manager's
 * Ganesha dies with it (setpriv --pdeathsig), so a new share manager can always call it.
 */
export async function releaseShare(options: ReleaseOptions): Promise<void> {
  const layout = shareLayout(options.stateDir, options.volumeId);
  await nodeUnstageVolume(
    shareNodeEnv(options),
    { volume_id: options.volumeId, staging_target_path: layout.mount },
    { logger: options.logger, signal: new AbortController().signal },
  );
}

/**
 * Releases what killed share managers of other volumes left in this node's share-manager state
 * folder (sweep.ts): the share manager that starts does it, and the node plugin on every node does
 * it periodically, so a dead one's mounts do not wait for the next share manager on that node.
 */
export function releaseDeadSharesHere(
  options: Omit<ReleaseOptions, 'volumeId'>,
  ownVolumeId = '',
): Promise<string[]> {
  return releaseDeadShares({
    stateDir: options.stateDir,
    ownVolumeId,
    attachmentProblem: (volumeId) => shareNodeEnv({ ...options, volumeId }).ops.attachmentProblem(volumeId),
    release: (volumeId) => releaseShare({ ...options, volumeId }),
    logger: options.logger,
  });
}

export class ShareManager {
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly options: ShareManagerOptions,
    private readonly ganesha: RunningGanesha,
    private readonly growth: GrowthWatch,
    private readonly bus: PrivateBus | undefined,
  ) {}

  static async start(options: ShareManagerOptions): Promise<ShareManager> {
    const { volumeId, logger } = options;
    const layout = shareLayout(options.stateDir, volumeId);
    const env = shareNodeEnv(options);
    const context = { logger, signal: new AbortController().signal };
    const capability = { mount: { fs_type: options.fsType }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
    // A share manager that died here left its mount (its Ganesha died with it): start clean, so
    // the device is attached afresh to the engine serving now.
    await releaseShare(options);
    await releaseDeadSharesHere(options, volumeId);
    let ganesha: RunningGanesha | undefined;
    let bus: PrivateBus | undefined;
    try {
      // Inside the try: a stage that fails after attaching (a mount the kernel refuses) must
      // detach while nbdfuse still runs, or its loop device outlives this Pod unnamed.
      await nodeStageVolume(
        env,
        {
          volume_id: volumeId,
          staging_target_path: layout.mount,
          volume_capability: capability,
        },
        context,
      );
      const device = await env.ops.attachedDevice(volumeId);
      if (device === undefined) throw new Error(`volume ${volumeId} is staged but has no block device`);
      const growth = new GrowthWatch({
        volumeId,
        socketPath: engineSocketPath(options.engineSocketDir, volumeId),
        attachedBytes: await env.ops.deviceSize(device),
        intervalMs: options.growCheckMs ?? 10_000,
        probe: probeExportSizes,
        grow: async () =>
          Number(
            (
              await nodeExpandVolume(
                env,
                { volume_id: volumeId, volume_path: layout.mount, volume_capability: capability },
                context,
              )
            ).capacity_bytes,
          ),
        logger,
      });
      await mkdir(layout.exportPath, { recursive: true });
      await chmod(layout.exportPath, 0o1777);
      await mkdir(layout.recoveryRoot, { recursive: true, mode: 0o700 });
      await mkdir(layout.runDir, { recursive: true, mode: 0o700 });
      bus = await PrivateBus.start(layout.runDir, logger);
      ganesha = await RunningGanesha.start({
        runDir: layout.runDir,
        busAddress: bus?.address,
        identity: ganeshaIdentity(volumeId),
        ganeshaBinary: options.ganeshaBinary,
        logger,
        settings: {
          exportPath: layout.exportPath,
          recoveryRoot: layout.recoveryRoot,
          serverScope: volumeId,
          bindAddress: options.bindAddress,
          port: options.port ?? NFS_PORT,
          pluginsDir: DEBIAN_GANESHA_PLUGINS,
          ...failoverTimings(options.fastFailover),
        },
      });
      logger.info({ volumeId, address: options.bindAddress, pid: ganesha.pid }, 'NFS export serving');
      const manager = new ShareManager(options, ganesha, growth, bus);
      await options.endpoint?.publish({ address: options.bindAddress, port: options.port ?? NFS_PORT });
      growth.start();
      return manager;
    } catch (err) {
      // Nothing of a failed start may stay behind: the next share manager may be on another node.
      await ganesha?.stop();
      await bus?.stop();
      await releaseShare(options).catch((cleanup: unknown) =>
        logger.warn({ err: String(cleanup) }, 'unstage after a failed start failed'),
      );
      throw err;
    }
  }

  /** NFS requests Ganesha served, by protocol (its own statistics); undefined when unavailable. */
  nfsOperations(): Promise<Record<string, number> | undefined> {
    return this.bus?.globalOps() ?? Promise.resolve(undefined);
  }

  get ganeshaPid(): number | undefined {
    return this.ganesha.pid;
  }

  /** Resolves when Ganesha exits on its own: the share manager must then exit too. */
  get ganeshaExited(): Promise<string> {
    return this.ganesha.exited.then(async (exit) => {
      const why = exit.signal ?? `code ${exit.code}`;
      return `NFS-Ganesha exited (${why}): ${await this.ganesha.failureLines()}`;
    });
  }

  /** Withdraws the endpoint, stops Ganesha (it writes its records), unmounts and detaches. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const { volumeId, logger } = this.options;
    await this.options.endpoint
      ?.withdraw()
      .catch((err: unknown) => logger.warn({ err: String(err) }, 'could not withdraw the endpoint'));
    await this.growth.stop();
    await this.ganesha.stop();
    await this.bus?.stop();
    await releaseShare(this.options);
    logger.info({ volumeId }, 'share manager stopped; volume unmounted and detached');
  }
}
