import { seededRandom } from '../../test/harness/random.js';
import { RangeLock } from './range-lock.js';

/** Lets every pending promise callback run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Tracks which acquisitions have been granted, in grant order. */
class Recorder {
  readonly order: string[] = [];
  readonly releases = new Map<string, () => void>();
  constructor(private readonly lock: RangeLock) {}

  acquire(name: string, offset: bigint | number, length: bigint | number): void {
    void this.lock.acquire(offset, length).then((release) => {
      this.order.push(name);
      this.releases.set(name, release);
    });
  }

  release(name: string): void {
    const release = this.releases.get(name);
    if (release === undefined) throw new Error(`${name} is not granted`);
    release();
  }
}

function setup(): { lock: RangeLock; r: Recorder } {
  const lock = new RangeLock();
  return { lock, r: new Recorder(lock) };
}

describe('RangeLock', () => {
  it('makes an overlapping request wait for the holder', async () => {
    const { lock, r } = setup();
    r.acquire('a', 0, 10);
    r.acquire('b', 5, 10);
    await settle();
    expect(r.order).toEqual(['a']);
    expect([lock.held, lock.waiting]).toEqual([1, 1]);
    r.release('a');
    await settle();
    expect(r.order).toEqual(['a', 'b']);
    expect([lock.held, lock.waiting]).toEqual([1, 0]);
  });

  it('lets disjoint and adjacent ranges proceed concurrently', async () => {
    const { lock, r } = setup();
    r.acquire('a', 0, 4);
    r.acquire('b', 4, 4);
    r.acquire('c', 100n, 50n);
    r.acquire('d', (1n << 64n) - 10n, 10n);
    await settle();
    expect(r.order).toEqual(['a', 'b', 'c', 'd']);
    expect([lock.held, lock.waiting]).toEqual([4, 0]);
  });

  it('grants overlapping waiters in arrival order', async () => {
    const { r } = setup();
    r.acquire('hold', 0, 100);
    r.acquire('w1', 0, 10);
    r.acquire('w2', 5, 10);
    r.acquire('w3', 0, 100);
    await settle();
    r.release('hold');
    await settle();
    expect(r.order).toEqual(['hold', 'w1']);
    r.release('w1');
    await settle();
    expect(r.order).toEqual(['hold', 'w1', 'w2']);
    r.release('w2');
    await settle();
    expect(r.order).toEqual(['hold', 'w1', 'w2', 'w3']);
  });

  it('waits for an earlier overlapping waiter even where no holder is', async () => {
    const { r } = setup();
    r.acquire('a', 0, 10);
    r.acquire('b', 5, 15); // waits for a
    r.acquire('c', 15, 10); // only overlaps b, which is waiting: must still come after it
    await settle();
    expect(r.order).toEqual(['a']);
    r.release('a');
    await settle();
    expect(r.order).toEqual(['a', 'b']);
    r.release('b');
    await settle();
    expect(r.order).toEqual(['a', 'b', 'c']);
  });

  it('releases waiters that do not overlap each other together', async () => {
    const { r } = setup();
    r.acquire('a', 0, 100);
    r.acquire('left', 0, 10);
    r.acquire('right', 90, 10);
    await settle();
    r.release('a');
    await settle();
    expect(r.order).toEqual(['a', 'left', 'right']);
  });

  it('never blocks on or for zero-length ranges', async () => {
    const { lock, r } = setup();
    r.acquire('a', 0, 100);
    r.acquire('zero', 50, 0);
    r.acquire('b', 50, 1);
    r.acquire('zero-2', 50n, 0n);
    await settle();
    expect(r.order).toEqual(['a', 'zero', 'zero-2']);
    expect([lock.held, lock.waiting]).toEqual([1, 1]);
    r.release('zero');
    r.release('zero');
    await settle();
    expect(r.order).toEqual(['a', 'zero', 'zero-2']);
  });

  it('ignores a second release of the same lock', async () => {
    const { lock, r } = setup();
    r.acquire('a', 0, 10);
    r.acquire('b', 0, 10);
    r.acquire('c', 0, 10);
    await settle();
    r.release('a');
    r.release('a');
    await settle();
    expect(r.order).toEqual(['a', 'b']);
    expect([lock.held, lock.waiting]).toEqual([1, 1]);
    r.release('b');
    await settle();
    r.release('c');
    r.release('c');
    expect([lock.held, lock.waiting]).toEqual([0, 0]);
  });

  it('rejects negative and fractional ranges', async () => {
    const lock = new RangeLock();
    await expect(lock.acquire(-1, 1)).rejects.toThrow(RangeError);
    await expect(lock.acquire(0, -1n)).rejects.toThrow(RangeError);
    await expect(lock.acquire(0.5, 1)).rejects.toThrow(RangeError);
    await expect(lock.acquire(0, Number.NaN)).rejects.toThrow(RangeError);
    expect([lock.held, lock.waiting]).toEqual([0, 0]);
  });

  it('chains a thousand writes to one block in order', async () => {
    const { lock, r } = setup();
    for (let i = 0; i < 1000; i++) r.acquire(String(i), 4096, 4096);
    await settle();
    expect([lock.held, lock.waiting]).toEqual([1, 999]);
    for (let i = 0; i < 1000; i++) {
      r.release(String(i));
      await Promise.resolve(); // one microtask is enough for the next grant
      await Promise.resolve();
    }
    expect(r.order).toEqual(Array.from({ length: 1000 }, (_, i) => String(i)));
    expect([lock.held, lock.waiting]).toEqual([0, 0]);
  });
});

interface ModelEntry {
  id: number;
  start: number;
  end: number;
}

/** Reference semantics: granted iff no earlier outstanding request overlaps (quadratic, obvious). */
function modelGranted(outstanding: ModelEntry[]): Set<number> {
  const granted = new Set<number>();
  outstanding.forEach((e, i) => {
    const empty = (x: ModelEntry): boolean => x.start === x.end;
    const blocked = outstanding.slice(0, i).some((p) => !empty(p) && p.start < e.end && e.start < p.end);
    if (!blocked || empty(e)) granted.add(e.id);
  });
  return granted;
}

describe('RangeLock against a reference model', () => {
  it.each([1, 2, 3, 4, 5])('agrees on every step (seed %i)', async (seed) => {
    const random = seededRandom(seed);
    const lock = new RangeLock();
    const releases = new Map<number, () => void>();
    let outstanding: ModelEntry[] = [];
    for (let step = 0; step < 600; step++) {
      const granted = [...releases.keys()];
      if (granted.length > 0 && (random() < 0.45 || outstanding.length > 40)) {
        const id = granted[Math.floor(random() * granted.length)] ?? -1;
        releases.get(id)?.();
        if (random() < 0.1) releases.get(id)?.(); // double release must be harmless
        releases.delete(id);
        outstanding = outstanding.filter((e) => e.id !== id);
      } else {
        const start = Math.floor(random() * 64);
        const length = random() < 0.1 ? 0 : 1 + Math.floor(random() * 16);
        outstanding.push({ id: step, start, end: start + length });
        void lock.acquire(start, length).then((release) => releases.set(step, release));
      }
      await settle();
      const expected = modelGranted(outstanding);
      expect(new Set(releases.keys())).toEqual(expected);
      const nonEmpty = outstanding.filter((e) => e.end > e.start);
      expect(lock.held).toBe(nonEmpty.filter((e) => expected.has(e.id)).length);
      expect(lock.waiting).toBe(outstanding.length - expected.size);
    }
  });

  // Speed belongs in a benchmark, not a timed test; this checks that a long run
  // with about a thousand outstanding ranges grants everything and drains.
  it('grants twenty thousand acquisitions with about a thousand outstanding, and drains to empty', async () => {
    const random = seededRandom(99);
    const lock = new RangeLock();
    const held: (() => void)[] = [];
    let granted = 0;
    for (let i = 0; i < 20_000; i++) {
      const offset = BigInt(Math.floor(random() * 1e6)) * 4096n;
      void lock.acquire(offset, 4096 * (1 + Math.floor(random() * 32))).then((release) => {
        granted++;
        held.push(release);
      });
      if (i % 1000 === 999) await settle();
      while (held.length > 1000) held.splice(Math.floor(random() * held.length), 1)[0]?.();
    }
    for (;;) {
      await settle();
      if (held.length === 0) break;
      for (const release of held.splice(0)) release();
    }
    expect(granted).toBe(20_000);
    expect(lock.held).toBe(0);
    expect(lock.waiting).toBe(0);
  });
});
