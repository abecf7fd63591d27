import { randomBytes } from 'node:crypto';
import type {
  ServerUnaryCall,
  ServiceDefinition,
  sendUnaryData,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { Logger } from '../../lib/log.js';
import { redact } from '../../lib/redact.js';
import { aborted, CsiError, statusName, toCsiError } from './errors.js';

/** What a handler gets besides its request. */
export interface RpcContext {
  /** A child logger carrying the method and request id. */
  logger: Logger;
  /** Aborted when the caller cancels or its deadline passes; the volume stays locked until the handler returns. */
  signal: AbortSignal;
}

/**
 * A CSI handler: a plain async function of the decoded request. The request
 * parameter is `never` here so that handlers typed with their own request
 * interface fit in one record (a function taking anything is assignable).
 */
export type CsiHandler = (request: never, context: RpcContext) => Promise<unknown>;
export type CsiHandlers = Readonly<Record<string, CsiHandler>>;

export interface RpcOptions {
  logger: Logger;
  /** One set per server process: calls on the same volume through any service of it exclude each other. */
  locks: VolumeLocks;
}

const CENSOR = '[redacted]';

/**
 * Fields whose values are secret wherever they sit. CSI marks them with the
 * `csi_secret` field option, but @grpc/proto-loader drops custom options from
 * the descriptors it exposes, so they are known by name here; every
 * `csi_secret` field of CSI 1.12 is called `secrets` (a test checks csi.proto).
 */
const SECRET_FIELDS = new Set(['secrets']);

/**
 * Methods that only read: they take no volume lock, so that kubelet's periodic
 * NodeGetVolumeStats or a ControllerGetVolume never collides with the
 * operation it would be observing (an ABORTED there is noise in kubelet's log).
 */
const UNLOCKED_METHODS = new Set(['ControllerGetVolume', 'NodeGetVolumeStats', 'ValidateVolumeCapabilities']);

/** Frequent, read-only calls (liveness probes, sidecar start-up): logged at debug when they succeed. */
const QUIET_METHODS = new Set([
  'Probe',
  'GetPluginInfo',
  'GetPluginCapabilities',
  'ControllerGetCapabilities',
  'NodeGetCapabilities',
  'NodeGetInfo',
  'NodeGetVolumeStats',
  'GetCapacity',
]);

/**
 * Volumes with an operation under way in this process. A second call for the
 * same volume is refused with ABORTED rather than queued: the CSI spec asks
 * for that, and the sidecars and kubelet retry with backoff, by when the first
 * call's outcome is recorded and the retry is answered from it (idempotency).
 */
export class VolumeLocks {
  private readonly held = new Set<string>();

  /** A release function, or undefined when the volume is busy. */
  tryAcquire(key: string): (() => void) | undefined {
    if (this.held.has(key)) return undefined;
    this.held.add(key);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held.delete(key);
    };
  }

  isHeld(key: string): boolean {
    return this.held.has(key);
  }

  get size(): number {
    return this.held.size;
  }
}

/**
 * The volume a call is about: the name for CreateVolume (there is no id yet;
 * a Tandem volume id is its name, so both spellings share one lock),
 * `volume_id` for everything else that has one.
 */
export function lockKey(method: string, request: unknown): string | undefined {
  if (UNLOCKED_METHODS.has(method) || typeof request !== 'object' || request === null) return undefined;
  const field = method === 'CreateVolume' ? 'name' : 'volume_id';
  const value = (request as Record<string, unknown>)[field];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * A copy of a request fit for a log line: every value under a secret field, at
 * any depth, replaced (the keys stay, they tell which secrets were passed),
 * byte fields shown by length. Also returns the secret values, to scrub them
 * from error messages too.
 */
export function redactRequest(request: unknown): { shown: unknown; secrets: string[] } {
  const secrets: string[] = [];
  const walk = (value: unknown, secret: boolean): unknown => {
    if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
      if (secret) secrets.push(Buffer.from(value).toString());
      return secret ? CENSOR : `[${value.byteLength} bytes]`;
    }
    if (Array.isArray(value)) return value.map((item) => walk(item, secret));
    if (typeof value === 'object' && value !== null) {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value))
        out[key] = walk(item, secret || SECRET_FIELDS.has(key));
      return out;
    }
    if (!secret || value === null || value === undefined) return value;
    secrets.push(String(value));
    return CENSOR;
  };
  return { shown: walk(request, false), secrets };
}

/**
 * The one entry point every CSI call goes through: takes the volume lock,
 * runs the handler, maps its error to a gRPC status, and logs method, result
 * code, duration and the redacted request. Resolves with the response or
 * rejects with a CsiError, never anything else.
 */
export async function runRpc(
  method: string,
  request: unknown,
  handler: CsiHandler,
  options: RpcOptions,
  signal: AbortSignal = new AbortController().signal,
): Promise<unknown> {
  const started = process.hrtime.bigint();
  const id = randomBytes(4).toString('hex');
  const logger = options.logger.child({ method, rpc: id });
  const { shown, secrets } = redactRequest(request);
  const finish = (code: status, extra: Record<string, unknown> = {}) => {
    const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
    const fields = {
      code: statusName(code),
      durationMs: Math.round(durationMs * 1000) / 1000,
      request: shown,
      ...extra,
    };
    if (code === status.OK) {
      if (QUIET_METHODS.has(method)) logger.debug(fields, 'CSI call');
      else logger.info(fields, 'CSI call');
    } else if (code === status.INTERNAL || code === status.UNKNOWN) logger.error(fields, 'CSI call failed');
    else logger.warn(fields, 'CSI call failed');
  };

  const key = lockKey(method, request);
  const release = key === undefined ? () => {} : options.locks.tryAcquire(key);
  if (!release) {
    const error = aborted(`operation already in progress for volume ${key}`);
    finish(error.code, { message: error.message });
    throw error;
  }
  try {
    const response = await handler(request as never, { logger, signal });
    finish(status.OK);
    return response;
  } catch (err) {
    const { error, reference } = toCsiError(err);
    const message = redact(error.message, secrets);
    const cause =
      reference === undefined
        ? undefined
        : redact(err instanceof Error ? (err.stack ?? err.message) : String(err), secrets);
    finish(error.code, { message, ...(cause === undefined ? {} : { reference, cause }) });
    throw message === error.message ? error : new CsiError(error.code, message);
  } finally {
    release();
  }
}

/**
 * A grpc-js implementation of one CSI service from plain handlers, each going
 * through runRpc. Methods the service defines but the handlers lack answer
 * UNIMPLEMENTED (grpc-js does that); a handler for a method the service does
 * not define is a programming error and throws here rather than never being called.
 */
export function serviceImplementation(
  definition: ServiceDefinition,
  handlers: CsiHandlers,
  options: RpcOptions,
): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(handlers)) {
    const methodDefinition = definition[method];
    if (!methodDefinition) throw new Error(`the CSI service has no method ${method}`);
    if (methodDefinition.requestStream || methodDefinition.responseStream)
      throw new Error(`${method} streams; CSI methods are unary`);
    implementation[method] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      const controller = new AbortController();
      call.on('cancelled', () => controller.abort());
      runRpc(method, call.request, handler, options, controller.signal).then(
        (response) => callback(null, response),
        (err: CsiError) => callback({ code: err.code, details: err.message }),
      );
    };
  }
  return implementation;
}
