/**
 * The scaling part of `npm run bench -- dataplane`: one data-plane process (one replica server
 * with its hosted engines, loopback) serving 1, 4 and 16 one-replica volumes at once. For each
 * count: fio writes 4 KiB at random to every volume at once (QD 4 per volume), and the figures are
 * the total IOPS, the data-plane process's CPU per I/O, and its resident memory with that many
 * volumes attached (per volume: the growth over the process with none).
 *
 * TANDEM_BENCH_SCALING: comma list of volume counts (default 1,4,16; empty skips the part).
 * Volumes are 64 MiB, prefilled, so the writes rewrite allocated blocks as in the main jobs.
 */

import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { cpuUse, snapshot } from './cpu.js';
import { type BenchEnv, startReplicaServers, startVolume, type TandemVolume } from './dataplane-setup.js';
import { fillJob, fio, runFio } from './fio.js';
import { round } from './stats.js';

const MIB = 2 ** 20;
const VOLUME_BYTES = 64 * MIB;
const DEPTH = 4;
const CORES = availableParallelism();

export const SCALING_COUNTS = (process.env.TANDEM_BENCH_SCALING ?? '1,4,16')
  .split(',')
  .filter((c) => c !== '')
  .map(Number);

async function rssBytes(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  return Number(kib ?? 0) * 1024;
}

/** One fio with a job per volume, all at once; total IOPS. */
async function writeAll(volumes: readonly TandemVolume[], seconds: number): Promise<number> {
  const args = [
    '--ioengine=nbd',
    '--rw=randwrite',
    '--bs=4k',
    `--iodepth=${DEPTH}`,
    `--size=${VOLUME_BYTES}`,
    '--time_based',
    `--runtime=${seconds}`,
    '--ramp_time=1',
    '--group_reporting',
    '--output-format=json',
    ...volumes.flatMap((v) => [`--name=${v.volume}`, `--uri=${v.uri}`]),
  ];
  return (await runFio('scaling', args, (seconds + 60) * 1000)).iops;
}

export async function benchScaling(env: BenchEnv, seconds: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  if (SCALING_COUNTS.length === 0) return out;
  const [server] = await startReplicaServers(env, 'scale', 'loopback', 1);
  if (server === undefined) throw new Error('no replica server for the scaling part');
  const volumes: TandemVolume[] = [];
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const idleRss = await rssBytes(server.service.pid);
    out.scale_idle_rss_mib = round(idleRss / MIB, 1);
    let previous = { rss: idleRss, count: 0 };
    for (const count of SCALING_COUNTS) {
      while (volumes.length < count) {
        const vol = await startVolume(env, [server], {
          volume: `scale-${volumes.length}`,
          sizeBytes: VOLUME_BYTES,
        });
        await fio(fillJob(vol.uri, VOLUME_BYTES, 120_000));
        volumes.push(vol);
      }
      const before = await snapshot();
      const iops = await writeAll(volumes, seconds);
      const cpu = cpuUse(before, await snapshot(), CORES, [{ name: 'dataplane', pid: server.service.pid }]);
      const rss = await rssBytes(server.service.pid);
      const cpuPct = cpu.dataplane ?? 0;
      // Percent of a core over the whole run (ramp included) per I/O of the measured part: a bound
      // slightly high, the same way for every count.
      const cpuUsPerIo = round(((cpuPct / 100) * 1e6) / Math.max(1, iops), 1);
      // RSS moves by tens of MiB with V8's heap sizing, so one volume's share is the growth from the
      // previous count (or from idle for the first), not RSS over the count.
      const perVolumeMib = round((rss - previous.rss) / MIB / (count - previous.count), 2);
      previous = { rss, count };
      console.log(
        `scaling ${String(count).padStart(2)} volume(s), 4k randwrite QD${DEPTH} each: ${round(iops, 0)} IOPS total, data plane ${cpuPct}% of a core = ${cpuUsPerIo} us CPU per I/O; RSS ${round(rss / MIB, 1)} MiB (${perVolumeMib} MiB per volume added since the previous count; idle ${round(idleRss / MIB, 1)} MiB)`,
      );
      out[`scale_${count}_iops`] = round(iops, 0);
      out[`scale_${count}_cpu_us_per_io`] = cpuUsPerIo;
      out[`scale_${count}_rss_mib`] = round(rss / MIB, 1);
      out[`scale_${count}_rss_per_volume_mib`] = perVolumeMib;
    }
    return out;
  } finally {
    for (const vol of volumes) await vol.stop().catch(() => undefined);
    await server.service.stop();
  }
}
