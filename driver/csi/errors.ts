import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';

/**
 * An error a CSI handler throws on purpose: the gRPC status code is part of
 * the CSI contract (the sidecars retry, back off or give up depending on it),
 * and the message reaches the user through Kubernetes events, so it says what
 * is wrong in words.
 */
export class CsiError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'CsiError';
  }
}

export const invalidArgument = (message: string) => new CsiError(status.INVALID_ARGUMENT, message);
export const notFound = (message: string) => new CsiError(status.NOT_FOUND, message);
export const alreadyExists = (message: string) => new CsiError(status.ALREADY_EXISTS, message);
export const failedPrecondition = (message: string) => new CsiError(status.FAILED_PRECONDITION, message);
export const aborted = (message: string) => new CsiError(status.ABORTED, message);
export const resourceExhausted = (message: string) => new CsiError(status.RESOURCE_EXHAUSTED, message);
export const outOfRange = (message: string) => new CsiError(status.OUT_OF_RANGE, message);
export const unavailable = (message: string) => new CsiError(status.UNAVAILABLE, message);
export const internal = (message: string) => new CsiError(status.INTERNAL, message);

/** `OK`, `ABORTED`, ...: the code's name for log lines. */
export function statusName(code: status): string {
  return status[code] ?? `UNKNOWN_STATUS_${code}`;
}

/**
 * What the caller gets for any error: a CsiError as it is; anything else
 * (a bug, an API server failure, a failed command) becomes INTERNAL with a
 * message that carries no internals, only a reference to the log line that
 * has the details, because messages end up in events any namespace user reads.
 */
export function toCsiError(err: unknown): { error: CsiError; reference?: string } {
  if (err instanceof CsiError) return { error: err };
  const reference = randomBytes(4).toString('hex');
  return {
    error: internal(`internal error (reference ${reference}; the details are in the driver's log)`),
    reference,
  };
}
