/**
 * Waiting for something to come up: a poll with a deadline that stops early when the process it
 * waits for has died, and a connect probe for TCP ports and unix sockets. Used by the harness, the
 * integration tests and the benchmarks.
 */
import { connect } from 'node:net';

/** Polls until `check` holds; fails after `timeoutMs` or as soon as `alive` says the process died. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  alive: () => boolean = () => true,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    if (!alive()) throw new Error(`${what}: the process exited`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

/** Whether something accepts connections at a TCP address or a unix socket path. */
export function canConnect(options: { host: string; port: number } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(options);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
