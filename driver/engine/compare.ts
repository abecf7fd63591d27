/**
 * Range-hash comparison of replicas: the scrub (report divergence) and the resync an engine runs
 * when it takes over a volume whose replicas say `dirty` (its predecessor may have died with
 * writes in flight on some replicas only; those blocks are made equal before any read, so a block
 * can never flip between two contents depending on which replica answers).
 *
 * Windows where no replica has allocated data are skipped, so holes cost nothing.
 */
import type { RangeLock } from '../replica/range-lock.js';
import { pieces, REQUEST_RANGE_STEP } from './ranges.js';
import type { Target } from './replica-set.js';

/** Range hashed per request: a replica answers with window / blockSize digests. */
const HASH_WINDOW = 64 * 1024 * 1024;
export const DEFAULT_HASH_BLOCK = 1024 * 1024;

export interface Divergence {
  offset: number;
  length: number;
  /** Nodes whose block differs from the first replica's (the reference). */
  nodes: string[];
}

export interface CompareReport {
  comparedBytes: number;
  skippedBytes: number;
  divergent: Divergence[];
}

export interface CompareOptions {
  sizeBytes: number;
  blockSize?: number;
  /** Held per hashed window, so writes through the engine cannot race the hashes (engine scrub). */
  lock?: RangeLock;
  /** Called for each divergent block while its window is still locked (resync copies it there). */
  onDivergence?: (d: Divergence, reference: Target, others: Target[]) => Promise<void>;
}

/** Compares `targets` (the first is the reference) block by block over every allocated window. */
export async function compareReplicas(
  targets: readonly Target[],
  options: CompareOptions,
): Promise<CompareReport> {
  const blockSize = options.blockSize ?? DEFAULT_HASH_BLOCK;
  const report: CompareReport = { comparedBytes: 0, skippedBytes: 0, divergent: [] };
  const [reference, ...others] = targets;
  if (reference === undefined || others.length === 0) return report;
  for (const window of pieces(0, options.sizeBytes, REQUEST_RANGE_STEP)) {
    const allocated = await allocatedWindows(targets, window.offset, window.length);
    for (const { offset: at, length } of pieces(window.offset, window.length, HASH_WINDOW)) {
      if (!allocated.some((e) => e.offset < at + length && e.offset + e.length > at)) {
        report.skippedBytes += length;
        continue;
      }
      const release = options.lock === undefined ? undefined : await options.lock.acquire(at, length);
      try {
        const hashes = await Promise.all(targets.map((t) => t.link.hash(at, length, blockSize)));
        const [mine, ...theirs] = hashes as [Buffer[], ...Buffer[][]];
        for (let i = 0; i < mine.length; i++) {
          const nodes = others
            .filter((_, j) => !(theirs[j] as Buffer[])[i]?.equals(mine[i] as Buffer))
            .map((t) => t.member.node);
          if (nodes.length === 0) continue;
          const offset = at + i * blockSize;
          const d = { offset, length: Math.min(blockSize, at + length - offset), nodes };
          report.divergent.push(d);
          await options.onDivergence?.(
            d,
            reference,
            others.filter((t) => nodes.includes(t.member.node)),
          );
        }
        report.comparedBytes += length;
      } finally {
        release?.();
      }
    }
  }
  return report;
}

/** The union of the replicas' allocated extents in a window. */
async function allocatedWindows(
  targets: readonly Target[],
  offset: number,
  length: number,
): Promise<{ offset: number; length: number }[]> {
  const lists = await Promise.all(targets.map((t) => t.link.extents(offset, length)));
  return lists.flat();
}

/** Copies one divergent block from the reference to the replicas that differ (used by resync). */
export async function copyBlock(d: Divergence, reference: Target, differing: Target[]): Promise<void> {
  const data = await reference.link.read(d.offset, d.length);
  await Promise.all(differing.map((t) => t.link.write(d.offset, data, false)));
}
