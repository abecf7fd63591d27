/**
 * fio with its nbd engine (libnbd), one job at a time, JSON output parsed into the figures the
 * data-plane benchmark reports. Every run is bounded: time-based jobs by --runtime, size-based
 * ones by the caller's limit, and fio is killed when it overruns.
 */
import { existsSync } from 'node:fs';
import { run } from '../lib/exec.js';

export type JobName = 'randread' | 'randwrite' | 'qd1write' | 'seqwrite' | 'seqread';

export interface JobSpec {
  name: JobName;
  label: string;
  rw: 'randread' | 'randwrite' | 'read' | 'write';
  bs: string;
  iodepth: number;
}

export const JOBS: readonly JobSpec[] = [
  { name: 'randread', label: '4k random read QD32', rw: 'randread', bs: '4k', iodepth: 32 },
  { name: 'randwrite', label: '4k random write QD32', rw: 'randwrite', bs: '4k', iodepth: 32 },
  { name: 'qd1write', label: '4k random write QD1', rw: 'randwrite', bs: '4k', iodepth: 1 },
  { name: 'seqwrite', label: '1M sequential write QD8', rw: 'write', bs: '1m', iodepth: 8 },
  { name: 'seqread', label: '1M sequential read QD8', rw: 'read', bs: '1m', iodepth: 8 },
];

export interface FioResult {
  iops: number;
  mibPerSec: number;
  /** Completion latency percentiles and mean, microseconds. */
  p50Us: number;
  p99Us: number;
  meanUs: number;
  ios: number;
  /** fio's own CPU use, percent of one core. */
  fioCpu: number;
}

/** An NBD export reachable over a unix socket: nbd+unix:///<export>?socket=<path>. */
export function nbdUri(socket: string, exportName = ''): string {
  return `nbd+unix:///${exportName}?socket=${socket}`;
}

export interface FioRun {
  uri: string;
  name: string;
  args: readonly string[];
  /** fio is killed after this long. */
  timeoutMs: number;
}

const SETPRIV = '/usr/bin/setpriv';

/** Runs one fio invocation and returns the figures of its (single) job, summed over read and write. */
export async function fio(spec: FioRun): Promise<FioResult> {
  const fioArgs = [
    `--name=${spec.name}`,
    '--ioengine=nbd',
    `--uri=${spec.uri}`,
    '--output-format=json',
    '--group_reporting',
    ...spec.args,
  ];
  return runFio(spec.name, fioArgs, spec.timeoutMs);
}

/** Runs fio with `fioArgs` (any number of jobs), killed after timeoutMs; the figures of its jobs, summed. */
export async function runFio(
  name: string,
  fioArgs: readonly string[],
  timeoutMs: number,
): Promise<FioResult> {
  // Under setpriv, fio dies with the benchmark even if the benchmark is SIGKILLed.
  const [command, args] = existsSync(SETPRIV)
    ? [SETPRIV, ['--pdeathsig', 'SIGKILL', '--', 'fio', ...fioArgs]]
    : ['fio', [...fioArgs]];
  const result = await run(command, args, { timeoutMs, allowFailure: true });
  if (result.code !== 0) {
    throw new Error(`fio ${name} exited with ${result.code}: ${result.stderr.trim().slice(-2000)}`);
  }
  return parseFioJson(result.stdout);
}

interface FioDirection {
  io_bytes: number;
  iops: number;
  bw_bytes: number;
  total_ios: number;
  clat_ns: { mean: number; percentile?: Record<string, number> };
}

/** fio prints "fio: connected to NBD server" before its JSON; everything up to the first brace is skipped. */
export function parseFioJson(stdout: string): FioResult {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error(`fio printed no JSON: ${stdout.slice(0, 500)}`);
  const parsed = JSON.parse(stdout.slice(start)) as {
    jobs: { error: number; read: FioDirection; write: FioDirection; usr_cpu: number; sys_cpu: number }[];
  };
  const job = parsed.jobs[0];
  if (job === undefined) throw new Error('fio reported no job');
  if (job.error !== 0) throw new Error(`fio job failed with error ${job.error}`);
  const active = [job.read, job.write].filter((d) => d.io_bytes > 0);
  const main = active[0];
  if (main === undefined) throw new Error('fio job moved no data');
  const pct = (d: FioDirection, key: string) => (d.clat_ns.percentile?.[key] ?? Number.NaN) / 1000;
  return {
    iops: active.reduce((sum, d) => sum + d.iops, 0),
    mibPerSec: active.reduce((sum, d) => sum + d.bw_bytes, 0) / 2 ** 20,
    p50Us: pct(main, '50.000000'),
    p99Us: pct(main, '99.000000'),
    meanUs: main.clat_ns.mean / 1000,
    ios: active.reduce((sum, d) => sum + d.total_ios, 0),
    fioCpu: job.usr_cpu + job.sys_cpu,
  };
}

/** A measured, time-based job over the whole export. */
export function timedJob(
  job: JobSpec,
  uri: string,
  sizeBytes: number,
  seconds: number,
  ramp: number,
): FioRun {
  return {
    uri,
    name: job.name,
    args: [
      `--rw=${job.rw}`,
      `--bs=${job.bs}`,
      `--iodepth=${job.iodepth}`,
      `--size=${sizeBytes}`,
      '--time_based',
      `--runtime=${seconds}`,
      `--ramp_time=${ramp}`,
      '--randrepeat=0',
    ],
    timeoutMs: (seconds + ramp + 60) * 1000,
  };
}

/**
 * Sequential 1 MiB writes: the whole export (prefill, so reads hit data, not holes), or with
 * `stride` only the first half of every 2*stride bytes (zonemode=strided), leaving holes between.
 */
export function fillJob(uri: string, sizeBytes: number, timeoutMs: number, stride?: number): FioRun {
  // io_size stops fio after one pass: without it, it would write every data zone twice.
  const zones =
    stride === undefined
      ? []
      : ['--zonemode=strided', `--zonesize=${stride}`, `--zoneskip=${stride}`, `--io_size=${sizeBytes / 2}`];
  return {
    uri,
    name: stride === undefined ? 'prefill' : 'half-fill',
    args: ['--rw=write', '--bs=1m', '--iodepth=8', `--size=${sizeBytes}`, ...zones],
    timeoutMs,
  };
}

/** 4 KiB random writes for `seconds` within the first `within` bytes (the rebuild test kills a replica meanwhile). */
export function pokeJob(uri: string, within: number, seconds: number): FioRun {
  return {
    uri,
    name: 'poke',
    args: [
      '--rw=randwrite',
      '--bs=4k',
      '--iodepth=16',
      `--size=${within}`,
      '--time_based',
      `--runtime=${seconds}`,
    ],
    timeoutMs: (seconds + 60) * 1000,
  };
}
