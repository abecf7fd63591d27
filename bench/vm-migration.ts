/**
 * `npm run bench -- vm-migration`: what storage adds to a live migration's pause. The same guest
 * (the built-in one, writing 4 KiB O_DIRECT blocks as fast as it can) is live-migrated back and
 * forth, first between two QEMU processes on this host sharing one local file (the ideal shared
 * disk: nothing to hand over), then between two real nodes of the lab on a migratable Tandem
 * claim (launcher pods, the kubelet's attach/stage/publish, the migrator's confirm). QEMU reports
 * each migration's downtime (the guest paused for the switch-over) and total time.
 *
 * Targets: Tandem adds ≤ 5 ms to the downtime at p50 and ≤ 15 ms at p99; the guest's write rate
 * while migrating is reported beside the reference's (guest_write_ratio).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab } from '../lab/lab.js';
import { guestReport } from '../lab/vm/guest-console.js';
import { LabKubeVirt } from '../lab/vm/kubevirt-stand-in.js';
import { qemuCommand } from '../lab/vm/launcher.js';
import { type MigrationInfo, QmpClient } from '../lab/vm/qmp.js';
import { claim, namespace } from '../lab/workloads.js';
import { run } from '../lib/exec.js';
import { createLogger } from '../lib/log.js';
import { packageRoot } from '../lib/paths.js';
import { waitFor } from '../lib/readiness.js';
import { round, summary } from './stats.js';

const MIGRATIONS = Math.max(2, Number(process.env.TANDEM_BENCH_MIGRATIONS ?? 10));
const NS = 'bench-vm';

interface Series {
  downtimeMs: number[];
  totalMs: number[];
  /** Guest writes per second over the whole series (the guest's own sequence numbers). */
  guestWritesPerS: number;
}

export async function benchVmMigration(): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-bench-vm-'));
  try {
    const guest = (
      await run('bash', [join(packageRoot(), 'lab', 'images', 'guest', 'build.sh')], {
        timeoutMs: 600_000,
      })
    ).stdout
      .trim()
      .split('\n')
      .at(-1) as string;
    const reference = await referenceSeries(dir, guest);
    process.stderr.write(`vm-migration: reference ${JSON.stringify(reference)}\n`);
    const tandem = await tandemSeries(dir);
    process.stderr.write(`vm-migration: tandem ${JSON.stringify(tandem)}\n`);
    const t = summary(tandem.downtimeMs);
    const r = summary(reference.downtimeMs);
    return {
      benchmark: 'vm-migration',
      migrations: MIGRATIONS,
      tandem_downtime_ms: t,
      reference_downtime_ms: r,
      tandem_total_ms: summary(tandem.totalMs),
      reference_total_ms: summary(reference.totalMs),
      downtime_ratio: round(t.p50 / Math.max(1, r.p50), 2),
      downtime_added_p50_ms: round(t.p50 - r.p50, 1),
      downtime_added_p99_ms: round(t.p99 - r.p99, 1),
      guest_writes_per_s: round(tandem.guestWritesPerS, 0),
      reference_guest_writes_per_s: round(reference.guestWritesPerS, 0),
      guest_write_ratio: round(tandem.guestWritesPerS / reference.guestWritesPerS, 2),
      target_downtime_added_p50_ms: 5,
      target_downtime_added_p99_ms: 15,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Two QEMUs on this host, one shared local file, migrated back and forth over loopback. */
async function referenceSeries(dir: string, guestDir: string): Promise<Series> {
  const disk = join(dir, 'shared.img');
  await writeFile(disk, '');
  await truncate(disk, 256 * 1024 * 1024);
  const processes: ChildProcess[] = [];
  const logs: string[] = [];
  const start = (index: number, incoming: boolean) => {
    const qmpPort = 47_400 + index * 2;
    const [command, ...args] = qemuCommand({
      vm: 'bench-reference',
      disk,
      diskDriver: 'file',
      cacheMode: 'none',
      memoryMiB: 128,
      kernel: join(guestDir, 'vmlinuz'),
      initrd: join(guestDir, 'initrd.img'),
      qmp: `tcp:127.0.0.1:${qmpPort}`,
      ...(incoming ? { incoming: `tcp:127.0.0.1:${qmpPort + 1}` } : {}),
    });
    const log = join(dir, `reference-${index}.log`);
    const child = spawn(command as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(createWriteStream(log));
    child.stderr?.pipe(createWriteStream(`${log}.err`));
    processes.push(child);
    logs.push(log);
    return { qmpPort, migrationPort: qmpPort + 1, log, child };
  };
  try {
    let source = start(0, false);
    await waitFor(
      'the reference guest to start',
      async () => (await readText(source.log)).includes('ready'),
      120_000,
    );
    const downtimeMs: number[] = [];
    const totalMs: number[] = [];
    const seqAt = async () =>
      Math.max(...(await Promise.all(logs.map(async (l) => guestReport(await readText(l)).lastSeq))));
    const seq0 = await seqAt();
    const t0 = Date.now();
    for (let i = 1; i <= MIGRATIONS; i++) {
      const target = start(i, true);
      await waitFor('the reference target to listen', async () => connectable(target.qmpPort), 30_000);
      const info = await migrateOnce(source.qmpPort, `tcp:127.0.0.1:${target.migrationPort}`);
      downtimeMs.push(info.downtime ?? Number.NaN);
      totalMs.push(info['total-time'] ?? Number.NaN);
      const q = await QmpClient.connect('127.0.0.1', source.qmpPort);
      await q.execute('quit').catch(() => undefined);
      q.close();
      source = target;
    }
    await new Promise((r) => setTimeout(r, 1_500));
    const guestWritesPerS = ((await seqAt()) - seq0) / ((Date.now() - t0) / 1000);
    return { downtimeMs, totalMs, guestWritesPerS };
  } finally {
    for (const p of processes) if (p.exitCode === null) p.kill('SIGKILL');
  }
}

async function migrateOnce(qmpPort: number, uri: string): Promise<MigrationInfo> {
  const q = await QmpClient.connect('127.0.0.1', qmpPort);
  try {
    await q.execute('migrate', { uri });
    for (;;) {
      const info = await q.execute<MigrationInfo>('query-migrate');
      if (info.status === 'completed') return info;
      if (info.status === 'failed' || info.status === 'cancelled')
        throw new Error(`reference migration ${info.status}: ${info['error-desc'] ?? ''}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    q.close();
  }
}

/** The same guest on a migratable Tandem claim, migrated between node-1 and node-2 of the lab. */
async function tandemSeries(dir: string): Promise<Series> {
  const lab = await startLab({
    nodes: 3,
    stateDir: join(dir, 'lab'),
    demo: false,
    logger: createLogger('bench', 'warn'),
  });
  try {
    const kubevirt = new LabKubeVirt(lab.cluster);
    await kubevirt.installCrds();
    await lab.cluster.kubectl(['apply', '-f', '-'], {
      input: [
        namespace(NS),
        claim(NS, 'disk', {
          storageClass: 'tandem-migratable',
          accessModes: ['ReadWriteMany'],
          volumeMode: 'Block',
          size: '256Mi',
        }),
      ]
        .map((o) => JSON.stringify(o))
        .join('\n'),
    });
    let place = await kubevirt.startVm({ namespace: NS, name: 'bench', claim: 'disk', node: 'node-1' });
    const consoles = new Map<string, string>();
    const seqAt = async () => {
      consoles.set(place.pod, await kubevirt.consoleLog(place));
      return Math.max(...[...consoles.values()].map((log) => guestReport(log).lastSeq));
    };
    const seq0 = await seqAt();
    const t0 = Date.now();
    const downtimeMs: number[] = [];
    const totalMs: number[] = [];
    for (let i = 0; i < MIGRATIONS; i++) {
      const outcome = await kubevirt.migrate(NS, 'bench', place.node === 'node-1' ? 'node-2' : 'node-1');
      if (!outcome.succeeded) throw new Error(`migration ${i + 1} failed: ${outcome.failure}`);
      downtimeMs.push(outcome.downtimeMs ?? Number.NaN);
      totalMs.push(outcome.totalMs ?? Number.NaN);
      process.stderr.write(
        `vm-migration: tandem ${i + 1}/${MIGRATIONS} ${outcome.source.node} → ${outcome.target.node}: downtime ${outcome.downtimeMs} ms, total ${outcome.totalMs} ms\n`,
      );
      place = outcome.now;
      // Let the migrator confirm (one engine again) before the next migration starts.
      await waitFor(
        'the migration confirmed',
        async () => {
          const out = await lab.cluster.kubectl([
            'get',
            'volumes.tandem.dev',
            '-o',
            'jsonpath={.items[*].status.migration.phase}',
          ]);
          return out.stdout.trim() === '';
        },
        120_000,
      );
    }
    await new Promise((r) => setTimeout(r, 1_500));
    const guestWritesPerS = ((await seqAt()) - seq0) / ((Date.now() - t0) / 1000);
    const report = guestReport(consoles.get(place.pod) ?? '');
    if (report.verifies.some((v) => !v.ok) || report.ioErrors.length > 0)
      throw new Error(
        `the guest found a problem: ${JSON.stringify(report.verifies.find((v) => !v.ok) ?? report.ioErrors[0])}`,
      );
    await kubevirt.deleteVm(NS, 'bench');
    return { downtimeMs, totalMs, guestWritesPerS };
  } finally {
    const problems = await lab.stop();
    if (problems.length > 0)
      process.stderr.write(`vm-migration: teardown problems: ${problems.join('; ')}\n`);
  }
}

async function readText(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => '');
}

async function connectable(port: number): Promise<boolean> {
  try {
    const q = await QmpClient.connect('127.0.0.1', port, 1_000);
    q.close();
    return true;
  } catch {
    return false;
  }
}
