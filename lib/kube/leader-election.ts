/**
 * Leader election with a coordination.k8s.io/v1 Lease, the way client-go's leaderelection package
 * does it, so Tandem's controllers and the CSI sidecars follow the same rules:
 *
 * - The Lease names its holder (`holderIdentity`), how long the holder's claim lasts
 *   (`leaseDurationSeconds`), when it was taken (`acquireTime`) and last renewed (`renewTime`), and
 *   how often it changed hands (`leaseTransitions`).
 * - Every write carries the resourceVersion it was computed from, so two candidates racing for the
 *   same Lease cannot both win: the loser gets 409 Conflict.
 * - A candidate only takes a Lease held by someone else once the record has not changed for the
 *   lease duration *as measured on its own clock*, from the moment it first saw that record. The
 *   renewTime written by the holder is never compared with the local clock, so clock skew between
 *   nodes cannot make two leaders.
 * - The leader renews every retry period; when it has not renewed within the renew deadline
 *   (shorter than the lease duration) it stops leading, before anyone else may take over. The caller
 *   is expected to exit the process then (a leader that lost its lease must not keep acting).
 * - stop() releases the Lease (holderIdentity emptied), so another candidate takes it at once
 *   instead of waiting for it to expire.
 */
import { hostname } from 'node:os';
import {
  ApiException,
  CoordinationV1Api,
  type KubeConfig,
  type V1Lease,
  V1MicroTime,
} from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';

/** The Lease operations the election needs; KubeLeaseApi talks to the apiserver, tests use a fake. */
export interface LeaseApi {
  /** undefined when the Lease does not exist. */
  get(namespace: string, name: string): Promise<V1Lease | undefined>;
  /** Rejects with a 409 ApiException when the Lease already exists. */
  create(namespace: string, lease: V1Lease): Promise<V1Lease>;
  /** Rejects with a 409 ApiException when metadata.resourceVersion is stale. */
  replace(namespace: string, name: string, lease: V1Lease): Promise<V1Lease>;
}

export class KubeLeaseApi implements LeaseApi {
  readonly #api: CoordinationV1Api;

  constructor(kc: KubeConfig) {
    this.#api = kc.makeApiClient(CoordinationV1Api);
  }

  async get(namespace: string, name: string): Promise<V1Lease | undefined> {
    try {
      return await this.#api.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw err;
    }
  }

  create(namespace: string, lease: V1Lease): Promise<V1Lease> {
    return this.#api.createNamespacedLease({ namespace, body: lease });
  }

  replace(namespace: string, name: string, lease: V1Lease): Promise<V1Lease> {
    return this.#api.replaceNamespacedLease({ namespace, name, body: lease });
  }
}

export interface LeaderElectionOptions {
  /** Where the Lease lives; give either a kubeconfig or a LeaseApi (tests). */
  kc?: KubeConfig;
  api?: LeaseApi;
  namespace: string;
  /** The Lease's name: every candidate for one role uses the same name. */
  name: string;
  /** Unique per process (defaultIdentity() gives hostname + random suffix). */
  identity: string;
  /** How long a claim lasts without renewal (written to the Lease rounded up to whole seconds). Default 15 s. */
  leaseDurationMs?: number;
  /** The leader stops leading when it could not renew for this long. Default 10 s. */
  renewDeadlineMs?: number;
  /** Interval between attempts to acquire or renew. Default 2 s. */
  retryPeriodMs?: number;
  log?: Logger;
}

export interface LeaderCallbacks {
  /**
   * Called once this candidate leads. `signal` aborts when it stops leading (stop() or a lost
   * lease). A returned promise is awaited (bounded by the renew deadline) before stop() releases
   * the Lease, so the next leader does not overlap with work still winding down.
   */
  onStartedLeading(signal: AbortSignal): void | Promise<void>;
  /** Called once after leading ends, for whatever reason; not called if it never led. */
  onStoppedLeading?(): void;
  /** Called when the observed holder changes (including to this candidate); '' = released. */
  onNewLeader?(identity: string): void;
}

/** How run() ended: stop() was called, or the lease could not be renewed / was taken. */
export type ElectionEnd = 'stopped' | 'lost';

/** client-go's JitterFactor: acquisition attempts are spread over retryPeriod × [1, 1.2). */
const JITTER = 1.2;

/** hostname plus a random suffix: two processes on one host (or a restarted pod) never share it. */
export function defaultIdentity(): string {
  return `${hostname()}_${Math.random().toString(36).slice(2, 10)}`;
}

const microTime = (value: Date | string | number | undefined): V1MicroTime | undefined =>
  value === undefined ? undefined : new V1MicroTime(value);

const isConflict = (err: unknown): boolean => err instanceof ApiException && err.code === 409;

interface Observation {
  holder: string;
  resourceVersion: string;
  leaseDurationMs: number;
  /** Local time (ms) when this resourceVersion was first seen. */
  at: number;
}

const TIMED_OUT = Symbol('timed out');

export class LeaderElection {
  readonly identity: string;
  readonly #api: LeaseApi;
  readonly #namespace: string;
  readonly #name: string;
  readonly #leaseDurationMs: number;
  readonly #leaseDurationSeconds: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #log: Logger;
  readonly #stop = new AbortController();
  #observed: Observation | undefined;
  #leading = false;
  #lastRenewAt = 0;
  #running: Promise<ElectionEnd> | undefined;

  constructor(options: LeaderElectionOptions) {
    const api = options.api ?? (options.kc ? new KubeLeaseApi(options.kc) : undefined);
    if (!api) throw new Error('LeaderElection needs a kubeconfig (kc) or a LeaseApi (api)');
    if (!options.identity) throw new Error('LeaderElection needs a non-empty identity');
    if (!options.namespace || !options.name)
      throw new Error('LeaderElection needs the Lease namespace and name');
    this.#api = api;
    this.identity = options.identity;
    this.#namespace = options.namespace;
    this.#name = options.name;
    this.#leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.#retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (!(this.#retryPeriodMs > 0)) throw new Error('retryPeriodMs must be positive');
    if (!(this.#renewDeadlineMs > JITTER * this.#retryPeriodMs))
      throw new Error(`renewDeadlineMs must be greater than ${JITTER} × retryPeriodMs`);
    if (!(this.#leaseDurationMs > this.#renewDeadlineMs))
      throw new Error('leaseDurationMs must be greater than renewDeadlineMs');
    this.#leaseDurationSeconds = Math.ceil(this.#leaseDurationMs / 1000);
    this.#log = (options.log ?? silentLogger()).child({
      lease: `${this.#namespace}/${this.#name}`,
      identity: this.identity,
    });
  }

  /** True while this candidate leads and has renewed within the renew deadline. */
  isLeader(): boolean {
    return this.#leading && Date.now() - this.#lastRenewAt < this.#renewDeadlineMs;
  }

  /** The holder last seen in the Lease ('' = released), undefined before the first read. */
  observedLeader(): string | undefined {
    return this.#observed?.holder;
  }

  /**
   * Campaigns until it leads, then renews until stop() or until it cannot renew in time.
   * Resolves when leading (or campaigning) is over; runs once per instance.
   */
  run(callbacks: LeaderCallbacks): Promise<ElectionEnd> {
    if (this.#running) throw new Error('LeaderElection.run() was already called');
    this.#running = this.#run(callbacks);
    return this.#running;
  }

  /**
   * Ends the election: aborts the leader's work, releases the Lease if held, calls
   * onStoppedLeading. Resolves when run() has returned.
   */
  async stop(): Promise<ElectionEnd | undefined> {
    this.#stop.abort();
    return this.#running;
  }

  async #run(callbacks: LeaderCallbacks): Promise<ElectionEnd> {
    const stopped = this.#stop.signal;
    // Campaign.
    let acquired = false;
    while (!acquired && !stopped.aborted) {
      const startedAt = Date.now();
      acquired = await this.#attempt(callbacks);
      if (acquired) this.#lastRenewAt = startedAt;
      else await this.#sleep(this.#retryPeriodMs * (1 + Math.random() * (JITTER - 1)));
    }
    if (!acquired) return 'stopped';
    if (stopped.aborted) {
      // stop() arrived while the winning write was in flight: give it back without leading.
      await this.#release();
      return 'stopped';
    }

    this.#leading = true;
    this.#log.info('started leading');
    const work = new AbortController();
    const working = (async () => {
      try {
        await callbacks.onStartedLeading(work.signal);
      } catch (err) {
        this.#log.error({ err }, 'the leader callback failed');
      }
    })();

    // Renew until stopped or too late.
    let end: ElectionEnd | undefined;
    while (end === undefined) {
      const deadline = this.#lastRenewAt + this.#renewDeadlineMs;
      await this.#sleep(Math.min(this.#retryPeriodMs, Math.max(0, deadline - Date.now())));
      if (stopped.aborted) {
        end = 'stopped';
        break;
      }
      const startedAt = Date.now();
      const renewed = await this.#withDeadline(this.#attempt(callbacks), deadline - startedAt);
      if (renewed === true) {
        this.#lastRenewAt = startedAt;
      } else if (this.#heldByOther()) {
        this.#log.error({ holder: this.#observed?.holder }, 'the lease was taken by another candidate');
        end = 'lost';
      } else if (Date.now() >= deadline) {
        this.#log.error(
          { renewDeadlineMs: this.#renewDeadlineMs },
          'could not renew the lease before the renew deadline',
        );
        end = 'lost';
      }
    }

    this.#leading = false;
    work.abort();
    if (end === 'stopped') {
      // Let the work wind down before another candidate may start, but never wait forever.
      await this.#withDeadline(working, this.#renewDeadlineMs);
      await this.#release();
    }
    this.#log.info({ end }, 'stopped leading');
    try {
      callbacks.onStoppedLeading?.();
    } catch (err) {
      this.#log.error({ err }, 'onStoppedLeading failed');
    }
    return end;
  }

  /** One try to acquire or renew; false when someone else holds it, on a lost race, or on an API error. */
  async #attempt(callbacks: LeaderCallbacks): Promise<boolean> {
    try {
      return await this.#tryAcquireOrRenew(callbacks);
    } catch (err) {
      this.#log.warn({ err }, 'reading or writing the lease failed');
      return false;
    }
  }

  async #tryAcquireOrRenew(callbacks: LeaderCallbacks): Promise<boolean> {
    const now = Date.now();
    const lease = await this.#api.get(this.#namespace, this.#name);
    if (!lease) {
      try {
        const created = await this.#api.create(this.#namespace, this.#lease(undefined, now));
        this.#observe(created, now, callbacks);
        return true;
      } catch (err) {
        if (isConflict(err)) return false;
        throw err;
      }
    }
    this.#observe(lease, now, callbacks);
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    if (this.#heldByOther(now)) return false;
    if (holder !== this.identity && holder !== '') {
      this.#log.info({ previous: holder }, 'taking over an expired lease');
    }
    try {
      const written = await this.#api.replace(this.#namespace, this.#name, this.#lease(lease, now));
      this.#observe(written, now, callbacks);
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /** The Lease this candidate writes to hold it, from the current one (undefined: none yet). */
  #lease(current: V1Lease | undefined, now: number): V1Lease {
    const spec = current?.spec ?? {};
    const renewing = current !== undefined && spec.holderIdentity === this.identity;
    const transitions = spec.leaseTransitions ?? 0;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: current
        ? { ...current.metadata, managedFields: undefined }
        : { name: this.#name, namespace: this.#namespace },
      spec: {
        holderIdentity: this.identity,
        leaseDurationSeconds: this.#leaseDurationSeconds,
        acquireTime: renewing ? microTime(spec.acquireTime ?? now) : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: current === undefined || renewing ? transitions : transitions + 1,
      },
    };
  }

  #observe(lease: V1Lease, now: number, callbacks: LeaderCallbacks): void {
    const resourceVersion = lease.metadata?.resourceVersion ?? '';
    if (this.#observed?.resourceVersion === resourceVersion) return;
    const holder = lease.spec?.holderIdentity ?? '';
    const previous = this.#observed?.holder;
    this.#observed = {
      holder,
      resourceVersion,
      leaseDurationMs: (lease.spec?.leaseDurationSeconds ?? this.#leaseDurationSeconds) * 1000,
      at: now,
    };
    if (holder !== previous) {
      this.#log.info({ holder }, 'lease holder changed');
      try {
        callbacks.onNewLeader?.(holder);
      } catch (err) {
        this.#log.error({ err }, 'onNewLeader failed');
      }
    }
  }

  /** Another candidate holds the Lease and its claim has not expired by the local clock. */
  #heldByOther(now = Date.now()): boolean {
    const observed = this.#observed;
    return (
      observed !== undefined &&
      observed.holder !== '' &&
      observed.holder !== this.identity &&
      observed.at + observed.leaseDurationMs > now
    );
  }

  /** Gives the Lease up so the next candidate need not wait for it to expire. */
  async #release(): Promise<void> {
    try {
      const lease = await this.#api.get(this.#namespace, this.#name);
      if (!lease || lease.spec?.holderIdentity !== this.identity) return;
      const now = Date.now();
      await this.#api.replace(this.#namespace, this.#name, {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { ...lease.metadata, managedFields: undefined },
        spec: {
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: microTime(lease.spec?.acquireTime ?? now),
          renewTime: microTime(now),
          leaseTransitions: lease.spec?.leaseTransitions ?? 0,
        },
      });
      this.#log.info('released the lease');
    } catch (err) {
      // It expires on its own after the lease duration.
      this.#log.warn({ err }, 'could not release the lease');
    }
  }

  /** Sleeps, returning early when stop() is called. */
  #sleep(ms: number): Promise<void> {
    const stopped = this.#stop.signal;
    if (stopped.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stopped.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      stopped.addEventListener('abort', done);
    });
  }

  /** The promise's value, or TIMED_OUT when it takes longer than ms (the promise keeps running). */
  async #withDeadline<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, ms));
    });
    try {
      return await Promise.race([promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
