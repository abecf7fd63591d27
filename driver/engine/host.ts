/**
 * One engine for one volume, assembled: membership (takeover or join), replica links, resync of a
 * dirty volume, the NBD server on a unix socket and/or TCP, the rebuild loop, scrub and metrics.
 * `tandem engine` runs one; the data-plane DaemonSet will run one per attached volume.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { NbdServer } from '../nbd/server.js';
import { ReplicaClient } from '../replica/client.js';
import type { VolumeRegistry } from '../replica/volume-registry.js';
import { type CompareReport, compareReplicas, copyBlock } from './compare.js';
import { Engine } from './engine.js';
import { LocalReplicaLink } from './local-link.js';
import type { MembershipStore } from './membership.js';
import { EngineMetrics } from './metrics.js';
import { Rebuilder, type RebuildOptions } from './rebuild.js';
import { type Connector, ReplicaSet, type ResizeResult } from './replica-set.js';

export interface EngineHostOptions {
  volume: string;
  node: string;
  secret: Buffer;
  store: MembershipStore;
  /** takeover: become the only engine (fences earlier ones); join: second engine for a migration. */
  mode: 'takeover' | 'join';
  nbdSocket?: string;
  nbdTcp?: { host: string; port: number };
  requestTimeoutMs?: number;
  log: Logger;
  metrics?: EngineMetrics;
  rebuild?: RebuildOptions & { enabled?: boolean };
  /** Test hook: how replicas are reached (default: TCP ReplicaClient). */
  connect?: Connector;
  /**
   * The replicas of this node's replica server when the engine runs in the same process
   * (`tandem dataplane`): the local replica is then reached by direct calls instead of TCP.
   */
  localReplicas?: VolumeRegistry;
}

export class EngineHost {
  readonly engineId: string;
  readonly set: ReplicaSet;
  readonly engine: Engine;
  readonly rebuilder: Rebuilder;
  readonly metrics: EngineMetrics;
  nbd: NbdServer | undefined;
  tcpPort: number | undefined;
  /** What the takeover resync found (undefined when no resync was needed). */
  resync: CompareReport | undefined;
  readonly #options: EngineHostOptions;
  readonly #log: Logger;

  private constructor(options: EngineHostOptions) {
    this.#options = options;
    this.engineId = `${options.node}/${process.pid}/${randomBytes(4).toString('hex')}`;
    this.#log = options.log.child({ volume: options.volume, engineId: this.engineId });
    this.metrics = options.metrics ?? new EngineMetrics();
    const requestTimeoutMs = options.requestTimeoutMs ?? 5000;
    const local = options.localReplicas;
    const connect: Connector =
      options.connect ??
      ((member, epoch) =>
        local !== undefined && member.node === options.node
          ? LocalReplicaLink.open({
              registry: local,
              volume: options.volume,
              secret: options.secret,
              epoch,
              requestTimeoutMs,
              log: this.#log,
            })
          : ReplicaClient.connect({
              address: member.address,
              volume: options.volume,
              engineId: this.engineId,
              secret: options.secret,
              epoch,
              requestTimeoutMs,
              connectTimeoutMs: Math.min(requestTimeoutMs, 3000),
              log: this.#log,
            }));
    this.set = new ReplicaSet({
      engineId: this.engineId,
      localNode: options.node,
      store: options.store,
      connect,
      log: this.#log,
    });
    this.set.onChange = (record) => this.metrics.observeMembership(options.volume, record);
    this.engine = new Engine({ volume: options.volume, set: this.set, log: this.#log });
    const volume = options.volume;
    this.rebuilder = new Rebuilder(this.set, this.engine.lock, this.#log, {
      ...options.rebuild,
      onProgress: (replica, copied, total) => {
        this.metrics.rebuildProgress.set({ volume, replica }, total === 0 ? 1 : copied / total);
        options.rebuild?.onProgress?.(replica, copied, total);
      },
      onFinished: (replica, outcome, copied, seconds) => {
        this.metrics.rebuilds.inc({ volume, outcome });
        this.metrics.rebuildBytes.inc({ volume }, copied);
        if (outcome === 'done') this.metrics.rebuildProgress.set({ volume, replica }, 1);
        options.rebuild?.onFinished?.(replica, outcome, copied, seconds);
      },
    });
  }

  static async start(options: EngineHostOptions): Promise<EngineHost> {
    const host = new EngineHost(options);
    try {
      await host.#start();
    } catch (err) {
      // A start that fails after attaching (a resync error, a socket that cannot be bound) must
      // not leave a member behind: a retry would take over again, bumping the epoch each time and
      // leaking the previous attempt's replica links.
      await host
        .stop({ leave: true })
        .catch((stopErr: unknown) =>
          host.#log.warn({ err: (stopErr as Error).message }, 'cleaning up a failed engine start failed'),
        );
      throw err;
    }
    return host;
  }

  async #start(): Promise<void> {
    const { volume, mode } = this.#options;
    await this.set.start(mode);
    this.#log.info(
      { epoch: this.set.record.epoch, mode, replicas: this.set.readable().length },
      'engine attached',
    );
    if (mode === 'takeover') await this.#resyncIfDirty();
    const nbd = new NbdServer({
      exportName: volume,
      size: this.set.sizeBytes,
      device: this.engine,
      // FLUSH goes to every replica and covers every connection's acknowledged writes.
      multiConn: true,
      // `<volume>@growable` for the node's nbdfuse + loop frontend (nbd/growable.ts).
      growable: true,
      logger: this.#log,
      onRequest: (op, bytes, seconds, ok) => this.metrics.observeRequest(volume, op, bytes, seconds, ok),
    });
    this.nbd = nbd;
    if (this.#options.nbdSocket !== undefined) await nbd.listenUnix(this.#options.nbdSocket);
    if (this.#options.nbdTcp !== undefined)
      this.tcpPort = await nbd.listenTcp(this.#options.nbdTcp.host, this.#options.nbdTcp.port);
    if (this.#options.rebuild?.enabled !== false) {
      this.rebuilder.start();
      void this.rebuilder.runOnce();
    }
  }

  /**
   * A previous engine may have died with writes in flight on some replicas only. Before the first
   * read, blocks that differ are copied from the reference replica (the local one if readable),
   * so every replica answers the same afterwards.
   */
  async #resyncIfDirty(): Promise<void> {
    const readable = this.set.readable();
    if (readable.length < 2 || !readable.some((t) => t.link.dirty)) return;
    const started = Date.now();
    this.resync = await compareReplicas(readable, {
      sizeBytes: this.set.sizeBytes,
      lock: this.engine.lock,
      onDivergence: copyBlock,
    });
    await Promise.all(readable.map((t) => t.link.flush()));
    this.#log.info(
      {
        divergentBlocks: this.resync.divergent.length,
        comparedBytes: this.resync.comparedBytes,
        ms: Date.now() - started,
      },
      'resync of a dirty volume finished',
    );
  }

  /** Compares the readable replicas under the range lock; sets the divergence metric. */
  async scrub(): Promise<CompareReport> {
    const volume = this.#options.volume;
    try {
      const report = await compareReplicas(this.set.readable(), {
        sizeBytes: this.set.sizeBytes,
        lock: this.engine.lock,
      });
      this.metrics.scrubDivergentBlocks.set({ volume }, report.divergent.length);
      this.metrics.scrubs.inc({ volume, result: report.divergent.length === 0 ? 'clean' : 'divergent' });
      return report;
    } catch (err) {
      this.metrics.scrubs.inc({ volume, result: 'error' });
      throw err;
    }
  }

  /**
   * Follows an expansion of the volume (the Volume's spec.sizeBytes, read fresh): once every
   * replica written to holds the new size, the engine serves it and the NBD server advertises it
   * to new connections. Connections already open keep the size they negotiated (NBD cannot tell
   * a client its export grew); they reconnect to see it. Resolves with `waiting` set while a
   * replica is still smaller (call again after growing it) or two engines share the volume.
   */
  async resize(): Promise<ResizeResult> {
    const result = await this.set.resize();
    if (this.nbd !== undefined && result.sizeBytes > this.nbd.size) {
      this.nbd.resize(result.sizeBytes);
      this.#log.info({ sizeBytes: result.sizeBytes }, 'NBD export grown; new connections see the new size');
    }
    return result;
  }

  /** Stops serving; with `leave` the engine also removes itself from the volume record. */
  async stop(options: { leave?: boolean } = {}): Promise<void> {
    await this.rebuilder.stop();
    await this.nbd?.close();
    if (options.leave === true) await this.set.leave();
    else this.set.closeLinks();
  }
}
