/**
 * Engines hosted by a node's `tandem dataplane` process, next to its replica server, so each
 * engine reaches its local replica by direct calls (local-link.ts). Started and stopped through
 * the data plane's admin endpoint (POST /engines, POST /engines/stop; loopback by default); the
 * DaemonSet reconciler of the CSI driver will drive the same pool from the Volume resources.
 */
import type { Logger } from 'pino';
import { parseHostPort, unixSocketPath } from '../../lib/config.js';
import { AdminInputError } from '../../lib/http-admin.js';
import { checkVolumeName } from '../replica/store.js';
import type { VolumeRegistry } from '../replica/volume-registry.js';
import { readCredentialFile } from './credential.js';
import { EngineHost } from './host.js';
import type { MembershipStore } from './membership.js';
import type { EngineMetrics } from './metrics.js';
import type { ResizeResult } from './replica-link.js';

export interface EngineSpec {
  volume: string;
  credentialFile: string;
  nbdSocket?: string;
  nbdListen?: { host: string; port: number };
  join: boolean;
  requestTimeoutMs: number;
  rebuildIntervalMs: number;
}

const SPEC_KEYS = new Set([
  'volume',
  'credentialFile',
  'nbdSocket',
  'nbdListen',
  'join',
  'requestTimeoutMs',
  'rebuildIntervalMs',
]);

/** Validates an admin request body into an EngineSpec; AdminInputError names what is wrong. */
export function parseEngineSpec(body: unknown): EngineSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new AdminInputError('send a JSON object');
  const raw = body as Record<string, unknown>;
  const unknown = Object.keys(raw).filter((k) => !SPEC_KEYS.has(k));
  if (unknown.length > 0)
    throw new AdminInputError(
      `unknown field(s) ${unknown.join(', ')}; allowed: ${[...SPEC_KEYS].join(', ')}`,
    );
  const text = (key: string, required: boolean): string | undefined => {
    const value = raw[key];
    if (value === undefined && !required) return undefined;
    if (typeof value !== 'string' || value === '')
      throw new AdminInputError(`${key} must be a non-empty string`);
    return value;
  };
  const integer = (key: string, min: number, max: number, fallback: number): number => {
    const value = raw[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new AdminInputError(`${key} must be an integer between ${min} and ${max}`);
    }
    return value;
  };
  const volume = text('volume', true) as string;
  try {
    checkVolumeName(volume);
  } catch (err) {
    throw new AdminInputError((err as Error).message);
  }
  const credentialFile = text('credentialFile', true) as string;
  if (!credentialFile.startsWith('/')) throw new AdminInputError('credentialFile must be an absolute path');
  const socket = text('nbdSocket', false);
  const listen = text('nbdListen', false);
  if (socket === undefined && listen === undefined)
    throw new AdminInputError('give nbdSocket, nbdListen or both');
  if (raw.join !== undefined && typeof raw.join !== 'boolean')
    throw new AdminInputError('join must be true or false');
  const parse = <T>(what: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw new AdminInputError(`${what}: ${(err as Error).message}`);
    }
  };
  return {
    volume,
    credentialFile,
    ...(socket === undefined ? {} : { nbdSocket: parse('nbdSocket', () => unixSocketPath(socket)) }),
    ...(listen === undefined ? {} : { nbdListen: parse('nbdListen', () => parseHostPort(listen)) }),
    join: raw.join === true,
    requestTimeoutMs: integer('requestTimeoutMs', 100, 600_000, 5000),
    rebuildIntervalMs: integer('rebuildIntervalMs', 100, 3_600_000, 3000),
  };
}

export interface EngineSummary {
  volume: string;
  engineId: string;
  epoch: number;
  /** The size the engine serves (below the Volume's spec.sizeBytes while an expansion waits). */
  sizeBytes: number;
  nbdPort?: number;
}

export class EnginePool {
  readonly #engines = new Map<string, Promise<EngineHost>>();
  readonly #node: string;
  readonly #registry: VolumeRegistry;
  readonly #metrics: EngineMetrics;
  readonly #storeFor: (volume: string) => MembershipStore;
  readonly #log: Logger;

  constructor(options: {
    node: string;
    registry: VolumeRegistry;
    metrics: EngineMetrics;
    storeFor: (volume: string) => MembershipStore;
    log: Logger;
  }) {
    this.#node = options.node;
    this.#registry = options.registry;
    this.#metrics = options.metrics;
    this.#storeFor = options.storeFor;
    this.#log = options.log;
  }

  /** Starts the engine of `spec.volume`; an engine already running for it is returned as is. */
  async start(spec: EngineSpec): Promise<EngineSummary> {
    let starting = this.#engines.get(spec.volume);
    if (starting === undefined) {
      const pending = readCredentialFile(spec.credentialFile).then((secret) =>
        EngineHost.start({
          volume: spec.volume,
          node: this.#node,
          secret,
          store: this.#storeFor(spec.volume),
          mode: spec.join ? 'join' : 'takeover',
          ...(spec.nbdSocket === undefined ? {} : { nbdSocket: spec.nbdSocket }),
          ...(spec.nbdListen === undefined ? {} : { nbdTcp: spec.nbdListen }),
          requestTimeoutMs: spec.requestTimeoutMs,
          rebuild: { checkIntervalMs: spec.rebuildIntervalMs },
          metrics: this.#metrics,
          localReplicas: this.#registry,
          log: this.#log,
        }),
      );
      this.#engines.set(spec.volume, pending);
      pending.catch(() => this.#engines.delete(spec.volume));
      starting = pending;
    }
    return summary(spec.volume, await starting);
  }

  async stop(volume: string, leave = true): Promise<{ stopped: boolean }> {
    const engine = this.#engines.get(volume);
    if (engine === undefined) return { stopped: false };
    this.#engines.delete(volume);
    await (await engine).stop({ leave });
    return { stopped: true };
  }

  /**
   * Lets the running engine of `volume` follow an expansion (EngineHost.resize); undefined when
   * none runs here. `waiting` in the result says the engine still serves the old size.
   */
  async resize(volume: string): Promise<(ResizeResult & { volume: string }) | undefined> {
    const host = await this.#engines.get(volume)?.catch(() => undefined);
    if (host === undefined) return undefined;
    return { volume, ...(await host.resize()) };
  }

  async list(): Promise<EngineSummary[]> {
    const out: EngineSummary[] = [];
    for (const [volume, engine] of this.#engines) {
      const host = await engine.catch(() => undefined);
      if (host !== undefined) out.push(summary(volume, host));
    }
    return out;
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.#engines.keys()].map((volume) => this.stop(volume)));
  }
}

function summary(volume: string, host: EngineHost): EngineSummary {
  return {
    volume,
    engineId: host.engineId,
    epoch: host.set.record.epoch,
    sizeBytes: host.set.sizeBytes,
    ...(host.tcpPort === undefined ? {} : { nbdPort: host.tcpPort }),
  };
}
