/**
 * What a running CsiStack shows of a volume: the Volume and its Secret on the apiserver, and per
 * node the loop devices, FUSE mounts, nbdfuse processes, mounts at the staging path, replica
 * directories and engine sockets; plus waits for those to appear, which restart-safety tests use as
 * kill points. Everything returns what it finds; the tests decide what it must be. The kubelet
 * paths a stack's volumes are staged and published at live here too. CsiVolumeSteps (the CSI calls)
 * builds on this.
 */
import { existsSync, realpathSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { engineSocketPath } from '../../driver/csi/node-topology.js';
import { credentialFilePath } from '../../driver/dataplane/credentials.js';
import { fuseLoopPaths, fuseSource } from '../../driver/node/fuse-loop.js';
import { type MountEntry, readMountInfo, splitDeviceNumber } from '../../driver/node/mounts.js';
import { devicesDir } from '../../driver/node/stage.js';
import type { Volume } from '../../lib/api/volume.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { canConnect } from '../../lib/readiness.js';
import { testKubeConfig } from './cluster.js';
import type { CsiStack, StackNode } from './csi-stack.js';
import { loopDevices, processesWith } from './host-inspection.js';
import { until } from './polling.js';

/** What a node shows of a volume. */
export interface Attachment {
  /** Loop devices over the volume's nbdfuse file. */
  loops: string[];
  /** Mount points of the volume's FUSE mounts. */
  fuseMounts: string[];
  /** Mounts at the volume's staging path. */
  stagingMounts: MountEntry[];
  /** Pids of the volume's nbdfuse processes. */
  nbdfuse: number[];
}

export class CsiVolumeView {
  readonly volumes: VolumeClient;
  readonly core: CoreV1Api;

  constructor(
    readonly stack: CsiStack,
    readonly kubeConfig: KubeConfig = testKubeConfig(),
  ) {
    this.volumes = new VolumeClient(kubeConfig);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
  }

  stagingPath(id: string, n: StackNode): string {
    return join(this.stack.dir, 'kubelet', n.name, 'staging', id);
  }

  targetPath(id: string, n: StackNode): string {
    return join(this.stack.dir, 'kubelet', n.name, 'pods', id, 'mount');
  }

  /** The Volume resource, or undefined when there is none. */
  async getVolume(id: string): Promise<Volume | undefined> {
    try {
      return await this.volumes.get(id);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  /** The credential Secrets of the volume in the stack's namespace. */
  async secretsOf(id: string): Promise<V1Secret[]> {
    const list = await this.core.listNamespacedSecret({
      namespace: this.stack.namespace,
      labelSelector: `tandem.dev/volume=${id}`,
    });
    return list.items;
  }

  /** The file nbdfuse serves the volume as on `n` (what its loop device is backed by). */
  #fuseLoopPaths(id: string, n: StackNode) {
    const dir = devicesDir(n.stateDir);
    return fuseLoopPaths(existsSync(dir) ? realpathSync(dir) : dir, id);
  }

  async loopsOf(id: string, n: StackNode): Promise<string[]> {
    const file = this.#fuseLoopPaths(id, n).file;
    return (await loopDevices())
      .filter((d) => d.backFile === file || d.backFile === `${file} (deleted)`)
      .map((d) => d.name);
  }

  /** What the node shows of the volume: loop devices, FUSE mounts, mounts at staging, nbdfuse processes. */
  async attachmentOf(id: string, n: StackNode): Promise<Attachment> {
    const mounts = await readMountInfo();
    const paths = this.#fuseLoopPaths(id, n);
    return {
      loops: await this.loopsOf(id, n),
      fuseMounts: mounts.filter((m) => m.source === fuseSource(id)).map((m) => m.mountPoint),
      stagingMounts: mounts.filter((m) => m.mountPoint === this.stagingPath(id, n)),
      nbdfuse: (await processesWith('nbdfuse', paths.mountDir)).map((p) => p.pid),
    };
  }

  /**
   * How many of each piece of an attachment `n` has (stagingMounts as their filesystem types), and
   * the device numbers of the mount at staging and of the loop device (when there are such).
   */
  async stagedState(id: string, n: StackNode) {
    const seen = await this.attachmentOf(id, n);
    const mount = seen.stagingMounts[0];
    const loop = seen.loops[0];
    const number = loop ? splitDeviceNumber((await stat(loop, { bigint: true })).rdev) : undefined;
    return {
      counts: {
        loops: seen.loops.length,
        fuseMounts: seen.fuseMounts.length,
        nbdfuse: seen.nbdfuse.length,
        stagingMounts: seen.stagingMounts.map((m) => m.fsType),
      },
      mountDevice: mount ? `${mount.major}:${mount.minor}` : undefined,
      loopDevice: number ? `${number.major}:${number.minor}` : undefined,
    };
  }

  /** Everything of `id` anywhere in the stack; all empty once the volume is gone. */
  async leftovers(id: string): Promise<string[]> {
    const perNode = await Promise.all(
      this.stack.nodes.map(async (n) => {
        const seen = await this.attachmentOf(id, n);
        return [
          ...(existsSync(join(n.dataDir, id)) ? [`replica dir on ${n.name}`] : []),
          ...(existsSync(credentialFilePath(n.dataDir, id)) ? [`credential file on ${n.name}`] : []),
          ...(existsSync(engineSocketPath(n.engineDir, id)) ? [`engine socket on ${n.name}`] : []),
          ...(existsSync(join(devicesDir(n.stateDir), id)) ? [`attachment dir on ${n.name}`] : []),
          ...(existsSync(join(n.stateDir, 'staged', `${id}.json`)) ? [`stage record on ${n.name}`] : []),
          ...seen.loops.map((l) => `loop ${l} on ${n.name}`),
          ...seen.fuseMounts.map((m) => `FUSE mount ${m}`),
          ...seen.stagingMounts.map((m) => `mount ${m.mountPoint}`),
          ...seen.nbdfuse.map((p) => `nbdfuse pid ${p}`),
        ];
      }),
    );
    return [
      ...((await this.getVolume(id)) ? [`Volume ${id}`] : []),
      ...(await this.secretsOf(id)).map((s) => `Secret ${s.metadata?.name}`),
      ...perNode.flat(),
    ];
  }

  /** Until every node of the stack has the volume's replica directory. */
  async waitForReplicaDirs(id: string): Promise<void> {
    await until(`replica dirs of ${id} on both nodes`, async () =>
      this.stack.nodes.every((n) => existsSync(join(n.dataDir, id))),
    );
  }

  /** Kill point of a publish: the controller has asked for the engine on `n` (spec.engines names it). */
  async waitForEngineRequest(id: string, n: StackNode): Promise<void> {
    await until(
      'spec.engines naming the node',
      async () => ((await this.getVolume(id))?.spec.engines ?? []).some((e) => e.node === n.name),
      30_000,
      5,
    );
  }

  /** Until status.engines is one engine, registered by the data plane process now running on `n`. */
  async waitForEngineOfCurrentDataplane(id: string, n: StackNode): Promise<void> {
    const pid = this.stack.pid(`dataplane:${n.name}`);
    await until(
      `the engine of ${id} on ${n.name} registered by data plane pid ${pid}`,
      async () => {
        const engines = (await this.getVolume(id))?.status?.engines ?? [];
        return engines.length === 1 && engines[0]?.id.startsWith(`${n.name}/${pid}/`) === true;
      },
      30_000,
    );
  }

  /** Until the engine's NBD socket on `n` accepts connections. */
  async waitForEngineSocket(id: string, n: StackNode): Promise<void> {
    await until(`the engine socket of ${id} on ${n.name} to answer`, () =>
      canConnect({ path: engineSocketPath(n.engineDir, id) }),
    );
  }

  /** Kill point of a stage: its loop device exists (mkfs and the mount come next). */
  async waitForLoop(what: string, id: string, n: StackNode): Promise<void> {
    await until(what, async () => (await this.loopsOf(id, n)).length > 0, 60_000, 10);
  }

  /** Until no process but nbdfuse has `loop` in its arguments (mkfs or mount a killed plugin left). */
  async waitForCommandsOn(loop: string): Promise<void> {
    await until(
      'commands the killed plugin started to finish',
      async () =>
        (await processesWith(loop)).filter((p) => !p.args.some((a) => a.includes('nbdfuse'))).length === 0,
    );
  }
}
