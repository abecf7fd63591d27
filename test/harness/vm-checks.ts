/**
 * Checks the VM migration tests make on real nodes, from outside the guest: the Volume's engines,
 * migration records and epoch, the replica files on the nodes' disks, the migrator's metrics, the
 * loop device under a pod's block device, and the processes of one pod (to SIGKILL QEMU or a data
 * plane the way a crash would). The guest checks itself (lab/vm/guest-console.ts reads it).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Volume } from '../../lib/api/volume.js';
import { run } from '../../lib/exec.js';
import { waitFor } from '../../lib/readiness.js';
import { type TandemCluster, tandemPods } from './real-cluster.js';

export async function readVolume(env: TandemCluster, name: string): Promise<Volume> {
  return JSON.parse(await env.kubectl('get', 'volumes.tandem.dev', name, '-o', 'json')) as Volume;
}

/** Waits until the volume's last migration ended with `phase` and no migration is in progress. */
export async function waitForMigrationEnd(
  env: TandemCluster,
  volume: string,
  phase: 'Confirmed' | 'RolledBack',
  since: string | undefined,
  timeoutMs = 120_000,
): Promise<Volume> {
  let current: Volume | undefined;
  await waitFor(
    `volume ${volume}'s migration ${phase}`,
    async () => {
      current = await readVolume(env, volume);
      const last = current.status?.lastMigration;
      return (
        current.status?.migration === undefined &&
        last?.phase === phase &&
        (since === undefined || (last.startedAt ?? '') > since)
      );
    },
    timeoutMs,
  ).catch(async (err: unknown) => {
    throw new Error(`${String(err)}; status now ${JSON.stringify(current?.status)}`);
  });
  return current as Volume;
}

/** The replica data files of a volume on every node's disk (/var/lib/tandem/replicas on the node). */
export async function replicaFiles(
  env: TandemCluster,
  volume: string,
): Promise<{ node: string; file: string }[]> {
  const found: { node: string; file: string }[] = [];
  for (const node of env.cluster.nodes) {
    const root = join(node.paths.dir, 'var-lib', 'tandem', 'replicas');
    for (const entry of await readdir(root).catch(() => [] as string[])) {
      if (!entry.includes(volume)) continue;
      const file = join(root, entry, 'data');
      if (
        await readFile(join(root, entry, 'meta.json')).then(
          () => true,
          () => false,
        )
      )
        found.push({ node: node.name, file });
    }
  }
  return found;
}

/** `qemu-img compare` of every replica against the first; the differences found (empty: identical). */
export async function compareReplicas(files: string[]): Promise<string[]> {
  const [first, ...others] = files;
  const problems: string[] = [];
  for (const other of others) {
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', first as string, other], {
      allowFailure: true,
      timeoutMs: 120_000,
    });
    if (cmp.code !== 0) problems.push(`${first} vs ${other}: ${cmp.stdout.trim()} ${cmp.stderr.trim()}`);
  }
  return problems;
}

/** `tandem_migrations_total{result}` summed over the migrator's pods (only the leader counts). */
export async function migrationsTotal(env: TandemCluster, result: string): Promise<number> {
  const ips = (await tandemPods(env, 'migrator')).map((p) => p.ip);
  let total = 0;
  for (const ip of ips) {
    const text = await fetch(`http://${ip}:9505/metrics`).then(
      (r) => r.text(),
      () => '',
    );
    for (const line of text.split('\n')) {
      if (!line.startsWith('tandem_migrations_total{') || !line.includes(`result="${result}"`)) continue;
      total += Number(line.split(' ').at(-1));
    }
  }
  return total;
}

/** The loop device behind a pod's block device, and whether the kernel runs it with direct I/O. */
export async function podLoopDevice(
  env: TandemCluster,
  namespace: string,
  pod: string,
  devicePath: string,
): Promise<{ device: string; dio: boolean }> {
  const [major, minor] = (await env.exec(namespace, pod, `stat -L -c '%t %T' ${devicePath}`))
    .trim()
    .split(' ')
    .map((hex) => Number.parseInt(hex, 16));
  const sys = `/sys/dev/block/${major}:${minor}`;
  const device = (await readFile(join(sys, 'uevent'), 'utf8')).match(/^DEVNAME=(.+)$/m)?.[1] ?? '';
  const dio = (await readFile(join(sys, 'loop', 'dio'), 'utf8').catch(() => '')).trim() === '1';
  return { device: `/dev/${device}`, dio };
}

/** Host pids of a pod's processes whose command line starts with `command` (found by the pod's cgroup). */
export async function podProcesses(
  env: TandemCluster,
  namespace: string,
  pod: string,
  command: string,
): Promise<number[]> {
  const uid = (
    await env.kubectl('-n', namespace, 'get', 'pod', pod, '-o', 'jsonpath={.metadata.uid}')
  ).trim();
  const forms = [uid, uid.replaceAll('-', '_')];
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cgroup = await readFile(`/proc/${entry}/cgroup`, 'utf8').catch(() => '');
    if (!forms.some((form) => cgroup.includes(form))) continue;
    const argv0 = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0')[0] ?? '';
    if (argv0.endsWith(command)) pids.push(Number(entry));
  }
  return pids;
}

/**
 * The warnings and errors Tandem's data-plane pods logged (pino levels 40 and up), each line
 * prefixed with its pod: what a failed data check prints so the cause is in the test's output.
 * Includes the previous container's log of pods that restarted (a SIGKILLed data plane).
 */
export async function dataPlaneWarnings(env: TandemCluster): Promise<string[]> {
  const lines: string[] = [];
  for (const { name } of await tandemPods(env, 'dataplane')) {
    for (const previous of [true, false]) {
      const log = await env
        .kubectl('-n', 'tandem-system', 'logs', name, ...(previous ? ['--previous'] : []))
        .catch(() => '');
      for (const line of log.split('\n')) {
        const level = Number(line.match(/"level":(\d+)/)?.[1] ?? 0);
        if (level >= 40) lines.push(`${name}${previous ? ' (previous)' : ''}: ${line}`);
      }
    }
  }
  return lines;
}
