import { WorkQueue } from './work-queue.js';

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe('WorkQueue', () => {
  it('runs a key once at a time and once more when added while running', async () => {
    let active = 0;
    let maxActive = 0;
    const runs: string[] = [];
    let release: (() => void) | undefined;
    const queue = new WorkQueue(async (key) => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs.push(key);
      if (runs.length === 1) await new Promise<void>((r) => (release = r));
      active--;
    });
    queue.add('a');
    await tick();
    queue.add('a');
    queue.add('a'); // collapses with the previous add
    await tick();
    expect(runs).toEqual(['a']);
    release?.();
    await queue.idle();
    expect(runs).toEqual(['a', 'a']);
    expect(maxActive).toBe(1);
  });

  it('runs different keys in parallel up to the concurrency', async () => {
    let active = 0;
    let maxActive = 0;
    const queue = new WorkQueue(
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await tick(10);
        active--;
      },
      { concurrency: 2 },
    );
    for (const key of ['a', 'b', 'c', 'd']) queue.add(key);
    await queue.idle();
    expect(maxActive).toBe(2);
  });

  it('retries a failing key with growing delays and resets after a success', async () => {
    const times: number[] = [];
    const queue = new WorkQueue(
      async () => {
        times.push(Date.now());
        if (times.length < 4) throw new Error('not yet');
      },
      { initialBackoffMs: 20, maxBackoffMs: 1000 },
    );
    queue.add('a');
    await tick(5);
    expect(queue.failures('a')).toBe(1);
    const deadline = Date.now() + 2000;
    while (times.length < 4 && Date.now() < deadline) await tick(5);
    await queue.idle();
    expect(times).toHaveLength(4);
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    expect(gaps[0]).toBeGreaterThanOrEqual(15);
    expect(gaps[1]).toBeGreaterThanOrEqual(35);
    expect(gaps[2]).toBeGreaterThanOrEqual(75);
    expect(queue.failures('a')).toBe(0);
    await queue.stop();
  });

  it('stop() cancels retries and ignores later adds', async () => {
    let runs = 0;
    const queue = new WorkQueue(
      async () => {
        runs++;
        throw new Error('always');
      },
      { initialBackoffMs: 10 },
    );
    queue.add('a');
    await queue.idle();
    await queue.stop();
    queue.add('a');
    await tick(40);
    expect(runs).toBe(1);
  });
});
