/**
 * In-process data plane for tests and benchmarks on loopback: replica servers (one data directory
 * each, standing in for nodes), replicas created in them, and an in-memory membership record.
 * The simulated-node tests run the same pieces as separate processes in network namespaces.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineHost, type EngineHostOptions } from '../../driver/engine/host.js';
import type { Membership } from '../../driver/engine/membership.js';
import { MemoryMembershipStore } from '../../driver/engine/memory-membership.js';
import { ReplicaServer } from '../../driver/replica/server.js';
import { ReplicaStore } from '../../driver/replica/store.js';
import { silentLogger } from '../../lib/log.js';

export interface LoopbackReplica {
  node: string;
  dataDir: string;
  server: ReplicaServer;
  port: number;
  address: string;
}

export interface LoopbackDataPlane {
  volume: string;
  secret: Buffer;
  sizeBytes: number;
  replicas: LoopbackReplica[];
  store: MemoryMembershipStore;
  root: string;
  /**
   * Starts an engine for the volume on `node` (takeover unless `mode` says join) serving NBD on a
   * unix socket in `socketDir`; destroy() stops it.
   */
  startEngine(
    node: string,
    options: { socketDir: string; mode?: 'takeover' | 'join'; extra?: Partial<EngineHostOptions> },
  ): Promise<LoopbackEngine>;
  /** Starts the replica server of `node` again (after stopReplica) on the same port. */
  restartReplica(node: string): Promise<void>;
  stopReplica(node: string): Promise<void>;
  destroy(): Promise<void>;
}

export interface LoopbackEngine {
  host: EngineHost;
  socket: string;
  uri: string;
}

export async function startLoopbackDataPlane(options: {
  replicas: number;
  sizeBytes: number;
  volume?: string;
}): Promise<LoopbackDataPlane> {
  const root = await mkdtemp(join(tmpdir(), 'tandem-dp-'));
  const volume = options.volume ?? 'vol-a';
  const secret = randomBytes(32);
  const replicas: LoopbackReplica[] = [];
  for (let i = 1; i <= options.replicas; i++) {
    const node = `node-${i}`;
    const dataDir = join(root, node);
    await (await ReplicaStore.create(dataDir, { volume, sizeBytes: options.sizeBytes, secret })).close();
    const server = new ReplicaServer({ dataDir, log: silentLogger() });
    const port = await server.listen('127.0.0.1', 0);
    replicas.push({ node, dataDir, server, port, address: `127.0.0.1:${port}` });
  }
  const record: Membership = {
    epoch: 1,
    sizeBytes: options.sizeBytes,
    replicas: replicas.map((r) => ({ node: r.node, address: r.address, mode: 'ReadWrite' as const })),
    engines: [],
  };
  const store = new MemoryMembershipStore(record, volume);
  const find = (node: string): LoopbackReplica => {
    const r = replicas.find((x) => x.node === node);
    if (r === undefined) throw new Error(`no replica on ${node}`);
    return r;
  };
  const engines: EngineHost[] = [];
  return {
    volume,
    secret,
    sizeBytes: options.sizeBytes,
    replicas,
    store,
    root,
    async startEngine(node, { socketDir, mode = 'takeover', extra = {} }) {
      const socket = join(socketDir, `${node}-${engines.length}.sock`);
      const host = await EngineHost.start({
        volume,
        node,
        secret,
        store,
        mode,
        nbdSocket: socket,
        requestTimeoutMs: 3000,
        log: silentLogger(),
        rebuild: { checkIntervalMs: 200 },
        ...extra,
      });
      engines.push(host);
      return { host, socket, uri: `nbd+unix:///${volume}?socket=${socket}` };
    },
    async stopReplica(node) {
      await find(node).server.close();
    },
    async restartReplica(node) {
      const r = find(node);
      r.server = new ReplicaServer({ dataDir: r.dataDir, log: silentLogger() });
      await r.server.listen('127.0.0.1', r.port);
    },
    async destroy() {
      await Promise.allSettled(engines.map((e) => e.stop()));
      await Promise.allSettled(replicas.map((r) => r.server.close()));
      await rm(root, { recursive: true, force: true });
    },
  };
}
