import type { Informer, KubernetesObject, ObjectCache } from '@kubernetes/client-node';
import { errorMessage } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';

export type Cache<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

export interface KeepWatchingOptions {
  /** For logs: what the informer watches, e.g. "volumes". */
  name: string;
  logger?: Logger;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * client-node's informer stops for good on the first error (a 429 while the
 * apiserver's cache warms up, a dropped connection, an expired watch). This
 * restarts it with exponential backoff, resetting after a successful start, so
 * a controller's cache heals instead of going silently stale. Resolves after
 * the first successful list; stop() ends the retries.
 */
export async function keepWatching<T extends KubernetesObject>(
  informer: Cache<T>,
  options: KeepWatchingOptions,
): Promise<{ stop: () => Promise<void> }> {
  const logger = options.logger ?? silentLogger();
  const initial = options.initialBackoffMs ?? 200;
  const max = options.maxBackoffMs ?? 30_000;
  let backoff = initial;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const startOnce = async (): Promise<boolean> => {
    try {
      await informer.start();
      backoff = initial;
      return true;
    } catch (err) {
      logger.warn(
        { informer: options.name, err: errorMessage(err), retryInMs: backoff },
        'informer start failed',
      );
      return false;
    }
  };
  const scheduleRestart = () => {
    if (stopped || timer) return;
    timer = setTimeout(async () => {
      timer = undefined;
      if (!stopped && !(await startOnce())) scheduleRestart();
    }, backoff);
    backoff = Math.min(backoff * 2, max);
  };

  informer.on('error', (err: unknown) => {
    if (stopped) return; // stop() aborts the watch, which reports as an error
    logger.warn(
      { informer: options.name, err: errorMessage(err), retryInMs: backoff },
      'informer stopped; restarting',
    );
    scheduleRestart();
  });

  while (!stopped && !(await startOnce())) {
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, max);
  }
  return {
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await informer.stop();
    },
  };
}
