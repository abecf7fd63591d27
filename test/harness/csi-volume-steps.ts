/**
 * A volume's life through the CSI calls of a running CsiStack, as a CO makes them (each call
 * retried while it says "again"): CreateVolume, ControllerPublishVolume, NodeStageVolume,
 * NodePublishVolume and back to DeleteVolume. Built on CsiVolumeView (what the stack shows of a
 * volume); tracks the volumes and background processes a test creates so `releaseAll()` can tear
 * down whatever a failed test left.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, VERSION, VOLUME_PLURAL } from '../../lib/api/volume.js';
import { run } from '../../lib/exec.js';
import { testKubeConfig } from './cluster.js';
import { CsiClient, capability, retrying } from './csi-client.js';
import type { CsiStack, StackNode } from './csi-stack.js';
import { CsiVolumeView } from './csi-volume-view.js';
import { until } from './polling.js';

export interface CreateVolumeResponse {
  volume: { volume_id: string; capacity_bytes: string };
}

/** Fills a new file with `mib` MiB of random data and flushes it to the device. */
export async function writeRandomFile(file: string, mib: number): Promise<void> {
  await run('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', `count=${mib}`, 'status=none']);
  await run('sync', ['-f', file]);
}

export class CsiVolumeSteps extends CsiVolumeView {
  readonly controller: CsiClient;
  /** Volumes a case created, so releaseAll can clean up after a failed one. */
  readonly created = new Set<string>();
  /** Background processes a case started (writers), killed in releaseAll if still running. */
  readonly children = new Set<ChildProcess>();
  readonly #nodeClients = new Map<string, CsiClient>();

  /** `sizeBytes`: the capacity CreateVolume asks for; volumes get two replicas. */
  constructor(
    stack: CsiStack,
    readonly sizeBytes: number,
    kubeConfig: KubeConfig = testKubeConfig(),
  ) {
    super(stack, kubeConfig);
    this.controller = new CsiClient(stack.controllerSocket);
  }

  node(i: number): StackNode {
    const n = this.stack.nodes[i];
    if (!n) throw new Error(`no node ${i}`);
    return n;
  }

  /** The CSI client of `n`'s node plugin (one per node, closed by releaseAll). */
  nodeClient(n: StackNode): CsiClient {
    let client = this.#nodeClients.get(n.name);
    if (!client) {
      client = new CsiClient(n.nodeSocket);
      this.#nodeClients.set(n.name, client);
    }
    return client;
  }

  /** Two replicas unless `parameters` say otherwise (they are merged over the defaults). */
  createRequest(name: string, parameters: Record<string, string> = {}) {
    return {
      name,
      capacity_range: { required_bytes: String(this.sizeBytes), limit_bytes: '0' },
      volume_capabilities: [capability('mount')],
      parameters: { numberOfReplicas: '2', ...parameters },
    };
  }

  publishRequest(id: string, n: StackNode) {
    return {
      volume_id: id,
      node_id: n.name,
      volume_capability: capability('mount'),
      readonly: false,
      volume_context: {},
    };
  }

  stageRequest(id: string, n: StackNode) {
    return {
      volume_id: id,
      staging_target_path: this.stagingPath(id, n),
      volume_capability: capability('mount'),
      publish_context: {},
      volume_context: {},
    };
  }

  nodePublishRequest(id: string, n: StackNode) {
    return {
      volume_id: id,
      staging_target_path: this.stagingPath(id, n),
      target_path: this.targetPath(id, n),
      volume_capability: capability('mount'),
      readonly: false,
    };
  }

  async createVolume(name: string, parameters: Record<string, string> = {}): Promise<string> {
    this.created.add(name);
    const res = await retrying(() =>
      this.controller.call<CreateVolumeResponse>(
        'Controller',
        'CreateVolume',
        this.createRequest(name, parameters),
      ),
    );
    this.created.add(res.volume.volume_id);
    return res.volume.volume_id;
  }

  /**
   * Starts a writer in the background (dd, 40 MiB of random data with O_DIRECT, so every write
   * goes through the engine), tracked until it exits; resolves with its exit code.
   */
  startWriter(file: string): Promise<number | null> {
    const writer = spawn('dd', [
      'if=/dev/urandom',
      `of=${file}`,
      'bs=256K',
      'count=160',
      'oflag=direct',
      'status=none',
    ]);
    this.children.add(writer);
    return new Promise((resolve) =>
      writer.once('exit', (code) => {
        this.children.delete(writer);
        resolve(code);
      }),
    );
  }

  async publish(id: string, n: StackNode): Promise<void> {
    await retrying(() =>
      this.controller.call('Controller', 'ControllerPublishVolume', this.publishRequest(id, n)),
    );
  }

  async stage(id: string, n: StackNode): Promise<void> {
    await retrying(() => this.nodeClient(n).call('Node', 'NodeStageVolume', this.stageRequest(id, n)));
  }

  async nodePublish(id: string, n: StackNode): Promise<void> {
    await retrying(() =>
      this.nodeClient(n).call('Node', 'NodePublishVolume', this.nodePublishRequest(id, n)),
    );
  }

  async nodeUnpublish(id: string, n: StackNode): Promise<void> {
    await retrying(() =>
      this.nodeClient(n).call('Node', 'NodeUnpublishVolume', {
        volume_id: id,
        target_path: this.targetPath(id, n),
      }),
    );
  }

  async nodeUnstage(id: string, n: StackNode): Promise<void> {
    await retrying(() =>
      this.nodeClient(n).call('Node', 'NodeUnstageVolume', {
        volume_id: id,
        staging_target_path: this.stagingPath(id, n),
      }),
    );
  }

  /**
   * Tears the volume down as a CO does: unpublish and unstage on `n` when given,
   * ControllerUnpublish, DeleteVolume; then waits up to 30 s for nothing of it to remain and
   * returns what still does (empty, and the volume no longer tracked, when all is gone).
   */
  async teardown(id: string, n?: StackNode): Promise<string[]> {
    if (n) {
      await this.nodeUnpublish(id, n);
      await this.nodeUnstage(id, n);
      await retrying(() =>
        this.controller.call('Controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: n.name }),
      );
    }
    await retrying(() => this.controller.call('Controller', 'DeleteVolume', { volume_id: id }));
    let left: string[] = [];
    await until(
      `nothing of ${id} left`,
      async () => {
        left = await this.leftovers(id);
        return left.length === 0;
      },
      30_000,
      200,
    ).catch(() => undefined);
    if (left.length === 0) this.created.delete(id);
    return left;
  }

  /**
   * Makes the apiserver refuse every Secret in the stack's namespace (a ResourceQuota `quota`
   * without room), waiting until a Secret is actually refused; `allowSecrets` undoes it.
   */
  async refuseSecrets(quota: string): Promise<void> {
    const namespace = this.stack.namespace;
    await this.core.createNamespacedResourceQuota({
      namespace,
      body: { metadata: { name: quota }, spec: { hard: { secrets: '0' } } },
    });
    await this.core.replaceNamespacedResourceQuotaStatus({
      name: quota,
      namespace,
      body: {
        metadata: { name: quota },
        spec: { hard: { secrets: '0' } },
        status: { hard: { secrets: '0' }, used: { secrets: '0' } },
      },
    });
    // Quota admission works from a cache: wait until a Secret is refused before relying on it.
    await until(
      'the apiserver to enforce the quota',
      async () => {
        try {
          await this.core.createNamespacedSecret({ namespace, body: { metadata: { name: 'probe' } } });
        } catch (err) {
          return (err as { code?: number }).code === 403;
        }
        await this.core.deleteNamespacedSecret({ name: 'probe', namespace });
        return false;
      },
      15_000,
      200,
    );
  }

  async allowSecrets(quota: string): Promise<void> {
    await this.core.deleteNamespacedResourceQuota({ name: quota, namespace: this.stack.namespace });
  }

  /**
   * Whatever failed cases left: kills their background processes, makes sure every process of the
   * stack runs, tears every tracked volume down through CSI (errors ignored), drops the finalizers
   * of Volumes the data planes could not release, and closes the clients. The stack stays up.
   */
  async releaseAll(): Promise<void> {
    for (const child of this.children) child.kill('SIGKILL');
    const stack = this.stack;
    for (const n of stack.nodes) {
      await stack.startDataplane(n.name).catch(() => undefined);
      await stack.startNodePlugin(n.name).catch(() => undefined);
    }
    await stack.startController().catch(() => undefined);
    for (const id of this.created) {
      for (const n of stack.nodes) {
        const client = this.nodeClient(n);
        await client
          .call('Node', 'NodeUnpublishVolume', { volume_id: id, target_path: this.targetPath(id, n) }, 20_000)
          .catch(() => undefined);
        await client
          .call(
            'Node',
            'NodeUnstageVolume',
            { volume_id: id, staging_target_path: this.stagingPath(id, n) },
            20_000,
          )
          .catch(() => undefined);
      }
      await this.controller
        .call('Controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: '' }, 20_000)
        .catch(() => undefined);
      await this.controller
        .call('Controller', 'DeleteVolume', { volume_id: id }, 20_000)
        .catch(() => undefined);
    }
    // A Volume the data planes could not release would stay forever (their finalizers).
    const custom = this.kubeConfig.makeApiClient(CustomObjectsApi);
    await sleep(this.created.size > 0 ? 3000 : 0);
    for (const id of this.created) {
      await custom
        .patchClusterCustomObject(
          {
            group: GROUP,
            version: VERSION,
            plural: VOLUME_PLURAL,
            name: id,
            body: { metadata: { finalizers: [] } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        )
        .catch(() => undefined);
      await this.volumes.delete(id).catch(() => undefined);
    }
    this.controller.close();
    for (const client of this.#nodeClients.values()) client.close();
  }
}
