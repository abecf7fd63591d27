/**
 * An in-memory ControllerCluster for the controller's unit tests: resourceVersions and 409s like
 * the apiserver, node Leases as records, and an optional data-plane stand-in that registers or
 * removes engines in status when spec.engines changes.
 */
import type { PodUse } from '../../driver/controller/cluster.js';
import { ConflictError, type ControllerCluster } from '../../driver/controller/cluster.js';
import type { NodeRegistrationRecord } from '../../driver/dataplane/node-registration.js';
import type { Volume } from '../../lib/api/volume.js';

const GiB = 1024 ** 3;

export class MemoryControllerCluster implements ControllerCluster {
  readonly volumes = new Map<string, Volume>();
  readonly credentials = new Set<string>();
  nodes: NodeRegistrationRecord[] = [];
  cordoned = new Set<string>();
  pods: PodUse[] | undefined;
  /** When true, engines appear in / leave status.engines as soon as spec.engines changes. */
  dataPlane = true;
  #version = 1;

  addNode(node: string, freeBytes = 100 * GiB, alive = true): void {
    this.nodes.push({
      node,
      address: `${node}.example:9500`,
      freeBytes,
      renewedAtMs: alive ? Date.now() : Date.now() - 3_600_000,
      leaseDurationMs: 40_000,
    });
  }

  async getVolume(name: string): Promise<Volume | undefined> {
    const v = this.volumes.get(name);
    return v && structuredClone(v);
  }

  async listVolumes(): Promise<Volume[]> {
    return [...this.volumes.values()].map((v) => structuredClone(v));
  }

  async createVolume(volume: Volume): Promise<Volume | undefined> {
    if (this.volumes.has(volume.metadata.name)) return undefined;
    const stored = structuredClone(volume);
    stored.metadata.resourceVersion = String(this.#version++);
    stored.metadata.generation = 1;
    this.volumes.set(volume.metadata.name, stored);
    return structuredClone(stored);
  }

  #write(volume: Volume, part: 'spec' | 'status'): Volume {
    const current = this.volumes.get(volume.metadata.name);
    if (!current) throw new Error('404');
    if (current.metadata.resourceVersion !== volume.metadata.resourceVersion)
      throw new ConflictError('volume');
    const next = structuredClone(current);
    if (part === 'spec') {
      next.spec = structuredClone(volume.spec);
      next.metadata = {
        ...structuredClone(volume.metadata),
        generation: (current.metadata.generation ?? 1) + 1,
      };
    } else {
      next.status = structuredClone(volume.status);
    }
    next.metadata.resourceVersion = String(this.#version++);
    this.volumes.set(next.metadata.name, next);
    if (part === 'spec' && this.dataPlane) this.#followSpec(next);
    return structuredClone(this.volumes.get(next.metadata.name) as Volume);
  }

  /** What the nodes' data planes would do: engines follow spec.engines. */
  #followSpec(volume: Volume): void {
    const wanted = (volume.spec.engines ?? []).map((e) => e.node);
    const status = volume.status ?? {};
    const engines = (status.engines ?? []).filter((e) => wanted.includes(e.node));
    for (const node of wanted)
      if (!engines.some((e) => e.node === node)) engines.push({ node, id: `engine-${node}` });
    volume.status = { ...status, engines };
    volume.metadata.resourceVersion = String(this.#version++);
  }

  async replaceVolume(volume: Volume): Promise<Volume> {
    return this.#write(volume, 'spec');
  }

  async replaceVolumeStatus(volume: Volume): Promise<Volume> {
    return this.#write(volume, 'status');
  }

  async deleteVolume(name: string): Promise<void> {
    this.volumes.delete(name);
  }

  async ensureCredential(volume: string): Promise<void> {
    this.credentials.add(volume);
  }

  async deleteCredential(volume: string): Promise<void> {
    this.credentials.delete(volume);
  }

  async listNodes(): Promise<NodeRegistrationRecord[]> {
    return structuredClone(this.nodes);
  }

  async cordonedNodes(): Promise<Set<string>> {
    return new Set(this.cordoned);
  }

  /** Claims that exist, `namespace/name` → UID. */
  readonly claims = new Map<string, string>();

  async claimUid(namespace: string, name: string): Promise<string | undefined> {
    return this.claims.get(`${namespace}/${name}`);
  }

  /** allowedTopologies node names of a claim's class, `namespace/name` → nodes. */
  readonly claimNodes = new Map<string, string[]>();

  async allowedNodesOfClaim(namespace: string, name: string): Promise<string[] | undefined> {
    return this.claimNodes.get(`${namespace}/${name}`);
  }

  async podsUsingVolume(): Promise<PodUse[] | undefined> {
    return this.pods && structuredClone(this.pods);
  }
}
