/**
 * Waiting on what runs in the background: `until` polls a check at a chosen pace with a deadline,
 * `settle` turns a call left running (while a process dies) into its outcome, never a rejection.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceError } from '@grpc/grpc-js';

/** The outcome of a call left running while a process dies: resolved or the gRPC error. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: ServiceError };

export function settle<T>(promise: Promise<T>): Promise<Outcome<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: ServiceError) => ({ ok: false as const, error }),
  );
}

/** Polls `check` every `everyMs` until it holds; fails after `timeoutMs` saying what was awaited. */
export async function until(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}
