/**
 * How a long-running component waits to be stopped: the first SIGINT or SIGTERM, or, when
 * `afterMs` is given, that much time, whichever comes first.
 */
export function untilStopSignal(options: { afterMs?: number } = {}): Promise<NodeJS.Signals | 'timeout'> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
    if (options.afterMs !== undefined) setTimeout(() => resolve('timeout'), options.afterMs).unref();
  });
}
