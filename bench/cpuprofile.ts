/**
 * Reads the .cpuprofile files `node --cpu-prof` writes on exit and sums self time per function
 * (name, file, line), so the benchmark can print what its slowest component spends its CPU on.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  fn: string;
  ms: number;
  percent: number;
}

/** Top `limit` functions by self time over every profile in `dir` (empty when none was written). */
export async function topSelfTime(dir: string, limit = 10): Promise<SelfTime[]> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.cpuprofile'));
  const totals = new Map<string, number>();
  let all = 0;
  for (const file of files) {
    const profile = JSON.parse(await readFile(join(dir, file), 'utf8')) as CpuProfile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const samples = profile.samples ?? [];
    const deltas = profile.timeDeltas ?? [];
    // Each sample lasts until the next one; the last gets the mean interval.
    const mean = samples.length > 0 ? (profile.endTime - profile.startTime) / samples.length : 0;
    samples.forEach((id, i) => {
      const node = byId.get(id);
      if (node === undefined) return;
      const us = deltas[i + 1] ?? mean;
      const frame = node.callFrame;
      const where = frame.url === '' ? '' : ` ${basename(frame.url)}:${frame.lineNumber + 1}`;
      const key = `${frame.functionName || '(anonymous)'}${where}`;
      totals.set(key, (totals.get(key) ?? 0) + us);
      all += us;
    });
  }
  return [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([fn, us]) => ({ fn, ms: Math.round(us / 1000), percent: Math.round((us / all) * 1000) / 10 }));
}
