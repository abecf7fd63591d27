/**
 * `npm run bench -- file-writes`: what one 4 KiB buffered write costs a replica on this machine,
 * the two facts behind the data-plane profile (docs/performance.md):
 *   - through libuv's thread pool (node:fs callbacks, what replicas did) against on the event
 *     loop's thread (what InlineWrites does for small writes), at queue depth 1 and 32;
 *   - into a file whose pages were written 1 MiB at a time against one written 4 KiB at a time
 *     (large page-cache folios make each small write walk the whole folio's buffers on ext4).
 * Bounded: 20,000 writes per case on a 256 MiB scratch file, removed afterwards.
 */
import * as fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { round } from './stats.js';

const SIZE = 256 * 1024 * 1024;
const BLOCK = 4096;
const WRITES = 20_000;

interface Cost {
  wallUs: number;
  cpuUs: number;
}

function prefill(path: string, blockSize: number): number {
  const fd = fs.openSync(path, 'w+', 0o600);
  const data = Buffer.alloc(blockSize, 3);
  for (let at = 0; at < SIZE; at += blockSize) fs.writeSync(fd, data, 0, blockSize, at);
  return fd;
}

const randomBlock = () => Math.floor(Math.random() * (SIZE / BLOCK)) * BLOCK;

async function measure(run: () => Promise<void>): Promise<Cost> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  await run();
  const used = process.cpuUsage(cpu);
  return {
    wallUs: round(((performance.now() - started) * 1000) / WRITES, 1),
    cpuUs: round((used.user + used.system) / WRITES, 1),
  };
}

function inline(fd: number): Promise<void> {
  const data = Buffer.alloc(BLOCK, 7);
  for (let i = 0; i < WRITES; i++) fs.writeSync(fd, data, 0, BLOCK, randomBlock());
  return Promise.resolve();
}

function pool(fd: number, depth: number): Promise<void> {
  const data = Buffer.alloc(BLOCK, 7);
  let issued = 0;
  let done = 0;
  return new Promise((resolve, reject) => {
    const next = (): void => {
      if (issued >= WRITES) {
        if (done === WRITES) resolve();
        return;
      }
      issued++;
      fs.write(fd, data, 0, BLOCK, randomBlock(), (err) => {
        if (err) return reject(err);
        done++;
        next();
      });
    };
    for (let i = 0; i < depth; i++) next();
  });
}

export async function benchFileWrites(): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-bench-fw-'));
  try {
    const large = prefill(join(dir, 'large-folios'), 1024 * 1024);
    const small = prefill(join(dir, 'small-folios'), BLOCK);
    const results = {
      pool_qd1: await measure(() => pool(small, 1)),
      inline_qd1: await measure(() => inline(small)),
      pool_qd32: await measure(() => pool(small, 32)),
      inline_after_1m_writes: await measure(() => inline(large)),
      inline_after_4k_writes: await measure(() => inline(small)),
    };
    fs.closeSync(large);
    fs.closeSync(small);
    for (const [name, cost] of Object.entries(results))
      console.log(`${name.padEnd(24)} ${cost.wallUs} us wall, ${cost.cpuUs} us CPU per 4 KiB write`);
    return {
      benchmark: 'file-writes',
      writes_per_case: WRITES,
      ...Object.fromEntries(
        Object.entries(results).flatMap(([name, c]) => [
          [`${name}_wall_us`, c.wallUs],
          [`${name}_cpu_us`, c.cpuUs],
        ]),
      ),
      pool_over_inline_cpu_qd1: round(results.pool_qd1.cpuUs / results.inline_qd1.cpuUs, 2),
      large_over_small_folio_cpu: round(
        results.inline_after_1m_writes.cpuUs / results.inline_after_4k_writes.cpuUs,
        2,
      ),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
