/**
 * CPU time over an interval, from /proc: the whole machine, chosen processes of the benchmark, and
 * everything outside the benchmark's process tree. On a small shared machine the limit is usually
 * CPU, and another busy process skews a run: the benchmark shows both, and repeats such a run.
 */
import { readdir, readFile } from 'node:fs/promises';

export interface Proc {
  name: string;
  pid: number | undefined;
}

interface ProcStat {
  comm: string;
  ppid: number;
  /** utime + stime, in jiffies, over all threads. */
  ticks: number;
}

export interface CpuSnapshot {
  at: number;
  /** Busy and total jiffies over all CPUs. */
  busy: number;
  total: number;
  procs: Map<number, ProcStat>;
}

const TICKS_PER_SECOND = 100;
const KTHREADD = 2;

async function readStat(pid: number): Promise<ProcStat | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (text === '') return undefined;
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const comm = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
  return { comm, ppid: Number(fields[1]), ticks: Number(fields[11] ?? 0) + Number(fields[12] ?? 0) };
}

export async function snapshot(): Promise<CpuSnapshot> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  const total = ticks.reduce((a, b) => a + b, 0);
  const procs = new Map<number, ProcStat>();
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = await readStat(pid);
    if (stat !== undefined) procs.set(pid, stat);
  }
  return { at: performance.now(), busy: total - idle, total, procs };
}

function isDescendant(pid: number, root: number, procs: Map<number, ProcStat>): boolean {
  for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
    if (p === root) return true;
    p = procs.get(p)?.ppid ?? 0;
  }
  return false;
}

/**
 * Percent of one core between two snapshots: `machine`, each named process, `fio`, `harness`
 * (the rest of this benchmark's process tree: control plane, the benchmark itself), `other
 * processes` (outside the tree: anything else running on the machine) and `kernel threads`
 * (writeback, softirq threads...). Processes that began and ended within the interval are missed
 * (fio among them, when the snapshot follows its exit).
 */
export function cpuUse(
  before: CpuSnapshot,
  after: CpuSnapshot,
  cores: number,
  named: readonly Proc[],
): Record<string, number> {
  const seconds = (after.at - before.at) / 1000;
  const pct = (ticks: number) => Math.round((ticks / TICKS_PER_SECOND / seconds) * 100);
  const delta = (pid: number) => (after.procs.get(pid)?.ticks ?? 0) - (before.procs.get(pid)?.ticks ?? 0);
  const use: Record<string, number> = {
    machine: Math.round(((after.busy - before.busy) / Math.max(1, after.total - before.total)) * cores * 100),
  };
  const namedPids = new Set<number>();
  for (const p of named) {
    if (p.pid === undefined) continue;
    namedPids.add(p.pid);
    use[p.name] = pct(delta(p.pid));
  }
  const sums = { fio: 0, harness: 0, other: 0, kernel: 0 };
  for (const [pid, stat] of after.procs) {
    if (namedPids.has(pid) || pid === KTHREADD) continue;
    if (stat.ppid === KTHREADD) sums.kernel += delta(pid);
    else if (!isDescendant(pid, process.pid, after.procs)) sums.other += delta(pid);
    else if (stat.comm === 'fio') sums.fio += delta(pid);
    else sums.harness += delta(pid);
  }
  use.fio = pct(sums.fio);
  use.harness = pct(sums.harness);
  use['other processes'] = pct(sums.other);
  use['kernel threads'] = pct(sums.kernel);
  return use;
}

export function formatCpu(use: Record<string, number>): string {
  return Object.entries(use)
    .map(([name, pct]) => `${name} ${pct}%`)
    .join(', ');
}
