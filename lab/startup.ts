import { readFile } from 'node:fs/promises';
import type { Service } from '../lib/service.js';

/** Polls `ready` until true; fails fast if the process exits, and on timeout. */
export async function waitUntil(
  name: string,
  service: Service,
  logFile: string,
  timeoutMs = 60_000,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!service.running) throw new Error(`${name} exited during startup:\n${await logTail(logFile)}`);
    if (await ready().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} not ready after ${timeoutMs} ms:\n${await logTail(logFile)}`);
}

export async function logTail(file: string, lines = 20): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '(no log)');
  return text.trim().split('\n').slice(-lines).join('\n');
}
