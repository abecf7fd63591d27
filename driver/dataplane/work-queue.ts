/**
 * A keyed work queue in the manner of client-go's: a key is processed by at most one worker at a
 * time, adding a key that is already waiting is a no-op (events collapse), adding one that is
 * being processed runs it once more afterwards (so the latest state is always seen), and a failed
 * key is retried after an exponential backoff that resets on success.
 */
import { errorMessage } from '../../lib/errors.js';
import { type Logger, silentLogger } from '../../lib/log.js';

export interface WorkQueueOptions {
  concurrency?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  log?: Logger;
}

export class WorkQueue {
  readonly #handler: (key: string) => Promise<void>;
  readonly #concurrency: number;
  readonly #initialBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #log: Logger;
  /** Insertion-ordered: the oldest waiting key runs first. */
  readonly #waiting = new Set<string>();
  readonly #running = new Set<string>();
  /** Added while running: to run again once the current run ends. */
  readonly #again = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #retryTimers = new Map<string, NodeJS.Timeout>();
  readonly #runs = new Set<Promise<void>>();
  #idleWaiters: (() => void)[] = [];
  #stopped = false;

  constructor(handler: (key: string) => Promise<void>, options: WorkQueueOptions = {}) {
    this.#handler = handler;
    this.#concurrency = options.concurrency ?? 4;
    this.#initialBackoffMs = options.initialBackoffMs ?? 500;
    this.#maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.#log = options.log ?? silentLogger();
  }

  add(key: string): void {
    if (this.#stopped) return;
    if (this.#running.has(key)) this.#again.add(key);
    else this.#waiting.add(key);
    this.#pump();
  }

  /** Consecutive failures of a key (0 after a success). */
  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Resolves when nothing is waiting or running (retries scheduled for later do not count). */
  idle(): Promise<void> {
    if (this.#waiting.size === 0 && this.#running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Stops taking work and cancels retries; resolves when the runs in progress have ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#waiting.clear();
    this.#again.clear();
    for (const timer of this.#retryTimers.values()) clearTimeout(timer);
    this.#retryTimers.clear();
    await Promise.allSettled([...this.#runs]);
  }

  #pump(): void {
    while (!this.#stopped && this.#running.size < this.#concurrency) {
      const key = this.#waiting.values().next().value;
      if (key === undefined) break;
      this.#waiting.delete(key);
      this.#running.add(key);
      const run = this.#run(key);
      this.#runs.add(run);
      void run.finally(() => this.#runs.delete(run));
    }
    if (this.#waiting.size === 0 && this.#running.size === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  async #run(key: string): Promise<void> {
    try {
      await this.#handler(key);
      this.#failures.delete(key);
      const timer = this.#retryTimers.get(key);
      if (timer) clearTimeout(timer);
      this.#retryTimers.delete(key);
    } catch (err) {
      const failures = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, failures);
      const delay = Math.min(this.#initialBackoffMs * 2 ** (failures - 1), this.#maxBackoffMs);
      this.#log.warn({ key, err: errorMessage(err), failures, retryInMs: delay }, 'reconcile failed');
      if (!this.#stopped && !this.#retryTimers.has(key)) {
        const timer = setTimeout(() => {
          this.#retryTimers.delete(key);
          this.add(key);
        }, delay);
        timer.unref();
        this.#retryTimers.set(key, timer);
      }
    } finally {
      this.#running.delete(key);
      if (this.#again.delete(key) && !this.#stopped) this.#waiting.add(key);
      this.#pump();
    }
  }
}
