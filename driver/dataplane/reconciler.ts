/**
 * The level-triggered reconciler of one node's data plane: from the Volume resources it makes the
 * node hold exactly the replicas `status.replicas` places on it and run exactly the engines
 * `spec.engines` asks of it. Every pass derives what to do from the Volume (informer cache, a
 * live read when the cache has none), the disk (replica directories, credential files) and the
 * engine pool, never from memory of earlier passes, so a restarted reconciler converges the same
 * way. Passes are triggered by informer events and by a full resync, serialized per volume and
 * retried with backoff (work-queue.ts).
 */
import { timingSafeEqual } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { Volume } from '../../lib/api/volume.js';
import { type Logger, silentLogger } from '../../lib/log.js';
import { engineSocketPath } from '../csi/node-topology.js';
import type { EngineSpec } from '../engine/engine-pool.js';
import { checkVolumeName, isVolumeName, readMetadata, readSecret } from '../replica/metadata.js';
import { ReplicaStore } from '../replica/store.js';
import {
  type CredentialSource,
  credentialSecretName,
  listCredentialFiles,
  removeCredentialFile,
  writeCredentialFile,
} from './credentials.js';
import { dataplaneFinalizer, ensureFinalizer, type VolumeWriter } from './finalizers.js';
import { WorkQueue } from './work-queue.js';

/** What the reconciler needs of an EnginePool (driver/engine/engine-pool.ts). */
export interface EngineRunner {
  start(spec: EngineSpec): Promise<unknown>;
  stop(volume: string): Promise<unknown>;
  /** sizeBytes: what the engine serves; below spec.sizeBytes the reconciler asks it to resize. */
  list(): Promise<{ volume: string; sizeBytes?: number }[]>;
  /** Follow an expansion (EnginePool.resize); `waiting` set = not yet, try again later. */
  resize?(volume: string): Promise<{ sizeBytes: number; wanted: number; waiting?: string } | undefined>;
}

/**
 * Grows a replica the node's replica server may have open (VolumeRegistry.grow of the
 * `tandem dataplane` process's ReplicaServer.registry), so its sessions see the new size at once.
 */
export interface ReplicaGrower {
  grow(volume: string, sizeBytes: number): Promise<number>;
}

type VolumeEvent = 'add' | 'update' | 'delete';

/** What the reconciler needs of the Volume informer (VolumeClient.informer(), already started). */
export interface VolumeCache {
  get(name: string): Volume | undefined;
  list(): readonly Volume[];
  on(verb: VolumeEvent, cb: (volume: Volume) => void): void;
  off(verb: VolumeEvent, cb: (volume: Volume) => void): void;
}

export interface ReconcilerOptions {
  node: string;
  dataDir: string;
  /** Where engines' NBD sockets go: `<runDir>/<volume>.sock`. */
  runDir: string;
  volumes: VolumeCache;
  writer: VolumeWriter;
  pool: EngineRunner;
  credentials: CredentialSource;
  /**
   * The replica server's registry (ReplicaServer.registry) when it runs in this process: replicas
   * are grown through it. Without it they are grown on disk, which is right only when no replica
   * server has them open.
   */
  replicas?: ReplicaGrower;
  resyncIntervalMs?: number;
  concurrency?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  engineRequestTimeoutMs?: number;
  engineRebuildIntervalMs?: number;
  log?: Logger;
}

/** What one pass decided, for logs and tests. */
export interface Desired {
  replica: boolean;
  engine: boolean;
  join: boolean;
}

/** The desired state of `node`'s part of a volume (undefined = the Volume does not exist). */
export function desiredState(volume: Volume | undefined, node: string): Desired {
  if (volume === undefined || volume.metadata.deletionTimestamp)
    return { replica: false, engine: false, join: false };
  const engineNodes = new Set((volume.spec.engines ?? []).map((e) => e.node));
  return {
    replica: (volume.status?.replicas ?? []).some((r) => r.node === node),
    engine: engineNodes.has(node),
    // Another wanted engine already serves: this one is the migration target and must not take over.
    join: (volume.status?.engines ?? []).some((e) => e.node !== node && engineNodes.has(e.node)),
  };
}

export class DataplaneReconciler {
  readonly #o: ReconcilerOptions;
  readonly #log: Logger;
  readonly #queue: WorkQueue;
  readonly #finalizer: string;
  readonly #onEvent = (volume: Volume) => this.#queue.add(volume.metadata.name);
  #resyncTimer: NodeJS.Timeout | undefined;
  #started = false;

  constructor(options: ReconcilerOptions) {
    this.#o = options;
    this.#log = (options.log ?? silentLogger()).child({ component: 'dataplane-reconciler' });
    this.#finalizer = dataplaneFinalizer(options.node);
    this.#queue = new WorkQueue((name) => this.reconcile(name), {
      concurrency: options.concurrency ?? 4,
      initialBackoffMs: options.initialBackoffMs ?? 500,
      maxBackoffMs: options.maxBackoffMs ?? 60_000,
      log: this.#log,
    });
  }

  /** Subscribes to the informer, runs a first full resync and keeps resyncing. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    for (const verb of ['add', 'update', 'delete'] as const) this.#o.volumes.on(verb, this.#onEvent);
    await this.resync();
    const interval = this.#o.resyncIntervalMs ?? 30_000;
    this.#resyncTimer = setInterval(() => {
      this.resync().catch((err: unknown) =>
        this.#log.warn({ err: (err as Error).message }, 'resync failed; next one in the next interval'),
      );
    }, interval);
  }

  /** Stops triggering passes and waits for running ones; engines and replicas are left as they are. */
  async stop(): Promise<void> {
    if (this.#resyncTimer) clearInterval(this.#resyncTimer);
    this.#resyncTimer = undefined;
    for (const verb of ['add', 'update', 'delete'] as const) this.#o.volumes.off(verb, this.#onEvent);
    await this.#queue.stop();
  }

  /**
   * Queues every volume that is in the cache or has anything on this node (replica directory,
   * credential file, engine), so leftovers of Volumes that vanished are cleaned up too.
   */
  async resync(): Promise<void> {
    const names = new Set(this.#o.volumes.list().map((v) => v.metadata.name));
    for (const name of await this.#replicaDirs()) names.add(name);
    for (const name of await listCredentialFiles(this.#o.dataDir)) names.add(name);
    for (const engine of await this.#o.pool.list()) names.add(engine.volume);
    for (const name of names) this.#queue.add(name);
  }

  /** Resolves once no pass is queued or running (backoff retries scheduled later do not count). */
  idle(): Promise<void> {
    return this.#queue.idle();
  }

  /** Consecutive failed passes of a volume. */
  failures(volume: string): number {
    return this.#queue.failures(volume);
  }

  /** One pass over one volume; throws to be retried. Public for tests and callers that must wait. */
  async reconcile(name: string): Promise<void> {
    checkVolumeName(name);
    // A cache miss is confirmed by a live read before anything is torn down: a cache still
    // filling up must not cost a node its replicas.
    const volume = this.#o.volumes.get(name) ?? (await this.#o.writer.get(name));
    const want = desiredState(volume, this.#o.node);
    const log = this.#log.child({ volume: name });
    const running = (await this.#o.pool.list()).some((e) => e.volume === name);
    const replicaDir = join(this.#o.dataDir, name);
    const hasReplicaDir = await exists(replicaDir);

    if (!want.replica) {
      // The engine reaches the local replica by direct calls: it must let go of it first. It is
      // started again below (on the remaining replicas) if it is still wanted.
      if (running && (hasReplicaDir || !want.engine)) {
        await this.#o.pool.stop(name);
        log.info({ reason: want.engine ? 'local replica removed' : 'engine not wanted' }, 'engine stopped');
      }
      if (hasReplicaDir) {
        await ReplicaStore.remove(this.#o.dataDir, name);
        log.info('replica removed');
      }
      if (!want.engine && (await removeCredentialFile(this.#o.dataDir, name)))
        log.debug('credential file removed');
      if (this.#hasFinalizer(volume) && (await ensureFinalizer(this.#o.writer, name, this.#finalizer, false)))
        log.info({ finalizer: this.#finalizer }, 'finalizer removed');
      if (!want.engine) return;
    }

    const secret = await this.#o.credentials.read(name);
    if (secret === undefined)
      throw new Error(`Secret ${credentialSecretName(name)} does not exist (yet); the controller issues it`);
    const credentialFile = await writeCredentialFile(this.#o.dataDir, name, secret);

    if (want.replica && volume) {
      // Before the replica exists, so no replica is ever left without the Volume waiting for us.
      if (!this.#hasFinalizer(volume) && (await ensureFinalizer(this.#o.writer, name, this.#finalizer, true)))
        log.info({ finalizer: this.#finalizer }, 'finalizer added');
      await this.#ensureReplica(volume, secret, log);
    }

    if (want.engine && !(await this.#o.pool.list()).some((e) => e.volume === name)) {
      await this.#o.pool.start({
        volume: name,
        credentialFile,
        nbdSocket: engineSocketPath(this.#o.runDir, name),
        join: want.join,
        requestTimeoutMs: this.#o.engineRequestTimeoutMs ?? 5000,
        rebuildIntervalMs: this.#o.engineRebuildIntervalMs ?? 3000,
      });
      log.info({ mode: want.join ? 'join' : 'takeover' }, 'engine started');
    } else if (!want.engine && running) {
      await this.#o.pool.stop(name);
      log.info({ reason: 'engine not wanted' }, 'engine stopped');
    }
    if (want.engine && volume) await this.#resizeEngine(volume, log);
  }

  /**
   * An engine serving less than spec.sizeBytes is asked to follow. It does once every replica holds
   * the new size; until the other nodes' reconcilers have grown theirs, the pass fails and is
   * retried with backoff (growing a replica does not change the Volume, so no event would come).
   */
  async #resizeEngine(volume: Volume, log: Logger): Promise<void> {
    const name = volume.metadata.name;
    const engine = (await this.#o.pool.list()).find((e) => e.volume === name);
    const wanted = volume.spec.sizeBytes;
    if (engine?.sizeBytes === undefined || engine.sizeBytes >= wanted || !this.#o.pool.resize) return;
    const result = await this.#o.pool.resize(name);
    if (result === undefined) return;
    if (result.waiting !== undefined)
      throw new Error(`expansion to ${result.wanted} bytes pending: ${result.waiting}`);
    log.info({ from: engine.sizeBytes, sizeBytes: result.sizeBytes }, 'engine expanded');
  }

  /**
   * Creates the replica, or checks the existing one without opening it (opening would tidy up
   * temp files a live replica server may be writing at that moment); grows it when it is smaller
   * than spec.sizeBytes.
   */
  async #ensureReplica(volume: Volume, secret: Buffer, log: Logger): Promise<void> {
    const name = volume.metadata.name;
    const dir = join(this.#o.dataDir, name);
    const meta = await readMetadata(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    const wanted = volume.spec.sizeBytes;
    if (meta === undefined) {
      const store = await ReplicaStore.create(this.#o.dataDir, { volume: name, sizeBytes: wanted, secret });
      await store.close();
      log.info({ sizeBytes: wanted }, 'replica created');
      return;
    }
    const stored = await readSecret(dir, name);
    if (stored.length !== secret.length || !timingSafeEqual(stored, secret))
      throw new Error(
        `replica ${name} holds a different credential than Secret ${credentialSecretName(name)}; not touching it`,
      );
    if (meta.sizeBytes < wanted) {
      await this.#growReplica(name, wanted);
      log.info({ from: meta.sizeBytes, sizeBytes: wanted }, 'replica grown');
    } else if (meta.sizeBytes > wanted) {
      throw new Error(
        `replica ${name} has ${meta.sizeBytes} bytes, more than spec.sizeBytes ${wanted}; volumes never shrink`,
      );
    }
  }

  /** Through the live replica server when there is one: its sessions must see the new size. */
  async #growReplica(name: string, sizeBytes: number): Promise<void> {
    if (this.#o.replicas !== undefined) {
      await this.#o.replicas.grow(name, sizeBytes);
      return;
    }
    const store = await ReplicaStore.open(this.#o.dataDir, name);
    try {
      await store.grow(sizeBytes);
    } finally {
      await store.close();
    }
  }

  /** From the cache: the live read in ensureFinalizer() confirms before anything is written. */
  #hasFinalizer(volume: Volume | undefined): boolean {
    return volume?.metadata.finalizers?.includes(this.#finalizer) ?? false;
  }

  /** Directories in the data dir named like a volume: complete replicas and interrupted creates. */
  async #replicaDirs(): Promise<string[]> {
    const entries = await fsp
      .readdir(this.#o.dataDir, { withFileTypes: true })
      .catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [];
        throw err;
      });
    return entries.filter((e) => e.isDirectory() && isVolumeName(e.name)).map((e) => e.name);
  }
}

async function exists(path: string): Promise<boolean> {
  return fsp.stat(path).then(
    () => true,
    () => false,
  );
}
