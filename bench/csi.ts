/**
 * `npm run bench -- csi`: how long a CO waits from CreateVolume until a new volume is ready for
 * I/O on a node, against the real driver (`tandem controller`, and per node `tandem dataplane
 * --reconcile` + `tandem node`, CsiStack) on a real kube-apiserver.
 *
 * Per volume, as a CO calls it: CreateVolume (2 replicas) → ControllerPublishVolume to node 1 →
 * NodeStageVolume there (mount access, ext4: attach, mkfs, mount) → a small file written and
 * fsynced on the staged filesystem. Volumes one after another (a CO's latency per volume), then
 * optionally a second pass with 5 at a time. The reference, measured in the same run: mkfs.ext4
 * (the driver's own options) + mount of a loop device over a local sparse file of the same size,
 * and the same file write + fsync.
 *
 * Everything is torn down in reverse afterwards (NodeUnstageVolume, ControllerUnpublishVolume,
 * DeleteVolume per volume, then the stack and the control plane); TANDEM_KEEP_TEST_STATE=1 keeps
 * the process logs (the stack's dir) and the control plane's.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkfsCommand } from '../driver/node/filesystem.js';
import { run } from '../lib/exec.js';
import { CsiClient, capability, isRetryable, retrying } from '../test/harness/csi-client.js';
import { CsiStack } from '../test/harness/csi-stack.js';
import { type CpuSnapshot, cpuUse, type Proc, snapshot } from './cpu.js';
import { Cleanup } from './dataplane-setup.js';
import { startStackControlPlane } from './stack-setup.js';
import { percentile, round } from './stats.js';

const MiB = 1024 * 1024;
const TARGET_P99_S = 3;
const READY_FILE_BYTES = 4096;

interface Timing {
  create: number;
  publish: number;
  stage: number;
  io: number;
  ready: number;
  /** Retryable refusals (UNAVAILABLE, ABORTED) repeated, as a CO would. */
  retries: number;
}

interface Options {
  volumes: number;
  sizeBytes: number;
  concurrency: number;
}

function options(): Options {
  const volumes = Number(process.env.TANDEM_BENCH_CSI_VOLUMES ?? 50);
  const sizeBytes = Number(process.env.TANDEM_BENCH_CSI_SIZE ?? 64 * MiB);
  const concurrency = Number(process.env.TANDEM_BENCH_CSI_CONCURRENCY ?? 5);
  if (!Number.isSafeInteger(volumes) || volumes < 1)
    throw new Error(`TANDEM_BENCH_CSI_VOLUMES must be a positive integer, not ${volumes}`);
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 16 * MiB)
    throw new Error(`TANDEM_BENCH_CSI_SIZE must be a byte count of at least 16 MiB, not ${sizeBytes}`);
  if (!Number.isSafeInteger(concurrency) || concurrency < 0)
    throw new Error(`TANDEM_BENCH_CSI_CONCURRENCY must be 0 (no concurrent pass) or more`);
  return { volumes, sizeBytes, concurrency };
}

const seconds = (fromMs: number) => (performance.now() - fromMs) / 1000;
const p = (samples: number[], pct: number) => round(percentile(samples, pct));
const keepState = () => process.env.TANDEM_KEEP_TEST_STATE === '1';

/** Writes a small file and fsyncs it (and its directory): the filesystem takes I/O. */
async function writeAndSync(dir: string): Promise<void> {
  const file = await open(join(dir, 'ready'), 'w');
  try {
    await file.write(Buffer.alloc(READY_FILE_BYTES, 0x5a));
    await file.sync();
  } finally {
    await file.close();
  }
  const parent = await open(dir, 'r');
  try {
    await parent.sync();
  } finally {
    await parent.close();
  }
}

/** CreateVolume → ControllerPublishVolume → NodeStageVolume → write + fsync, one volume. */
class VolumeRunner {
  constructor(
    private readonly stack: CsiStack,
    private readonly controller: CsiClient,
    private readonly node: CsiClient,
    private readonly nodeId: string,
    private readonly sizeBytes: number,
    private readonly cleanup: Cleanup,
  ) {}

  async ready(label: string): Promise<Timing> {
    let retries = 0;
    const retry = <T>(fn: () => Promise<T>) =>
      retrying(() =>
        fn().catch((err: unknown) => {
          if (isRetryable(err)) retries++;
          throw err;
        }),
      );
    const cap = capability('mount');
    const name = `pvc-${randomUUID()}`;
    const start = performance.now();

    let t = performance.now();
    const created = await retry(() =>
      this.controller.call<{ volume: { volume_id: string; volume_context: Record<string, string> } }>(
        'Controller',
        'CreateVolume',
        {
          name,
          capacity_range: { required_bytes: String(this.sizeBytes) },
          volume_capabilities: [cap],
          parameters: { numberOfReplicas: '2' },
        },
      ),
    );
    const create = seconds(t);
    const volumeId = created.volume.volume_id;
    this.cleanup.add(`DeleteVolume ${volumeId}`, () =>
      retrying(() => this.controller.call('Controller', 'DeleteVolume', { volume_id: volumeId })),
    );

    t = performance.now();
    const published = await retry(() =>
      this.controller.call<{ publish_context: Record<string, string> }>(
        'Controller',
        'ControllerPublishVolume',
        {
          volume_id: volumeId,
          node_id: this.nodeId,
          volume_capability: cap,
          readonly: false,
          volume_context: created.volume.volume_context ?? {},
        },
      ),
    );
    const publish = seconds(t);
    this.cleanup.add(`ControllerUnpublishVolume ${volumeId}`, () =>
      retrying(() =>
        this.controller.call('Controller', 'ControllerUnpublishVolume', {
          volume_id: volumeId,
          node_id: this.nodeId,
        }),
      ),
    );

    const staging = join(this.stack.dir, 'staging', label);
    // kubelet creates the staging directory before NodeStageVolume.
    await mkdir(staging, { recursive: true });
    t = performance.now();
    // Registered before the call: a stage that fails half-way must still be undone.
    this.cleanup.add(`NodeUnstageVolume ${volumeId}`, () =>
      retrying(() =>
        this.node.call('Node', 'NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging }),
      ),
    );
    await retry(() =>
      this.node.call('Node', 'NodeStageVolume', {
        volume_id: volumeId,
        publish_context: published.publish_context ?? {},
        staging_target_path: staging,
        volume_capability: cap,
        secrets: {},
        volume_context: created.volume.volume_context ?? {},
      }),
    );
    const stage = seconds(t);

    t = performance.now();
    await writeAndSync(staging);
    const io = seconds(t);
    return { create, publish, stage, io, ready: seconds(start), retries };
  }
}

/** Runs `count` volumes, `concurrency` at a time; timings in the order they finished. */
async function pass(
  runner: VolumeRunner,
  tag: string,
  count: number,
  concurrency: number,
): Promise<Timing[]> {
  const timings: Timing[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const timing = await runner.ready(`${tag}-${i}`);
        timings.push(timing);
        if (concurrency === 1 && (i + 1) % 10 === 0)
          process.stderr.write(
            `${tag}: ${i + 1}/${count} volumes ready (last ${timing.ready.toFixed(3)} s)\n`,
          );
      }
    }),
  );
  return timings;
}

/**
 * The reference: a sparse local file of the same size on a loop device, mkfs.ext4 with the
 * driver's options, mounted, the same write + fsync. Each iteration is undone right away.
 */
async function reference(dir: string, sizeBytes: number, count: number, cleanup: Cleanup): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const image = join(dir, `ref-${i}.img`);
    const mountPoint = join(dir, `ref-${i}`);
    await mkdir(mountPoint, { recursive: true });
    const start = performance.now();
    const handle = await open(image, 'w');
    await handle.truncate(sizeBytes);
    await handle.close();
    const loop = (await run('losetup', ['--find', '--show', image])).stdout.trim();
    const detach = () => run('losetup', ['-d', loop], { allowFailure: true });
    cleanup.add(`reference loop ${loop}`, detach);
    const [mkfs, args] = mkfsCommand(loop, 'ext4');
    await run(mkfs, args, { timeoutMs: 120_000 });
    await run('mount', ['-t', 'ext4', loop, mountPoint]);
    const unmount = () => run('umount', [mountPoint], { allowFailure: true });
    cleanup.add(`reference mount ${mountPoint}`, unmount);
    await writeAndSync(mountPoint);
    samples.push(seconds(start));
    await unmount();
    await detach();
    await rm(image, { force: true });
  }
  return samples;
}

function summarize(timings: Timing[]) {
  const of = (key: keyof Timing) => timings.map((t) => t[key]);
  return {
    ready_p50_s: p(of('ready'), 50),
    ready_p99_s: p(of('ready'), 99),
    ready_max_s: round(Math.max(...of('ready'))),
    create_p50_s: p(of('create'), 50),
    publish_p50_s: p(of('publish'), 50),
    stage_p50_s: p(of('stage'), 50),
    io_p50_s: p(of('io'), 50),
    create_p99_s: p(of('create'), 99),
    publish_p99_s: p(of('publish'), 99),
    stage_p99_s: p(of('stage'), 99),
    retries: timings.reduce((sum, t) => sum + t.retries, 0),
  };
}

/**
 * How ControllerPublish and NodeStage latency grows with the volumes in the cluster: the sequential
 * pass keeps every volume it made until its teardown, so its first ten volumes were published with
 * ~10 in the cluster and its last ten with all of them. Empty below 20 volumes.
 */
function growth(timings: Timing[]): Record<string, number> {
  if (timings.length < 20) return {};
  const first = timings.slice(0, 10);
  const last = timings.slice(-10);
  const p50 = (list: Timing[], key: keyof Timing) =>
    p(
      list.map((t) => t[key]),
      50,
    );
  const out = {
    growth_volumes_from: 10,
    growth_volumes_to: timings.length,
    publish_p50_first10_s: p50(first, 'publish'),
    publish_p50_last10_s: p50(last, 'publish'),
    stage_p50_first10_s: p50(first, 'stage'),
    stage_p50_last10_s: p50(last, 'stage'),
  };
  return {
    ...out,
    publish_growth_ratio: round(out.publish_p50_last10_s / Math.max(out.publish_p50_first10_s, 1e-6), 2),
    stage_growth_ratio: round(out.stage_p50_last10_s / Math.max(out.stage_p50_first10_s, 1e-6), 2),
  };
}

/**
 * The stack's processes by role, found by their command lines (CsiStack keeps its children to
 * itself): the controller, each node's data plane and node plugin.
 */
async function stackProcs(stack: CsiStack): Promise<Proc[]> {
  const procs: Proc[] = [];
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (args[0] !== process.execPath) continue;
    if (!args.some((a) => a.startsWith(stack.dir)) && !args.includes(stack.namespace)) continue;
    const nodeId = args[args.indexOf('--node-id') + 1] ?? '';
    const index = stack.nodes.findIndex((n) => n.name === nodeId) + 1;
    if (args.includes('controller')) procs.push({ name: 'controller', pid });
    else if (args.includes('dataplane')) procs.push({ name: `dataplane-${index}`, pid });
    else if (args.includes('node')) procs.push({ name: `node-plugin-${index}`, pid });
  }
  return procs;
}

/** Percent of one core per role over a pass; `nbdfuse` sums the attachments' FUSE servers. */
function passCpu(before: CpuSnapshot, after: CpuSnapshot, named: Proc[]): Record<string, number> {
  const use = cpuUse(before, after, cpus().length, named);
  const seconds = (after.at - before.at) / 1000;
  let ticks = 0;
  for (const [pid, stat] of after.procs)
    if (stat.comm === 'nbdfuse') ticks += stat.ticks - (before.procs.get(pid)?.ticks ?? 0);
  const nbdfuse = Math.round((ticks / 100 / seconds) * 100);
  // nbdfuse runs in the benchmark's process tree: taken out of `harness` (apiserver, etcd, this process).
  const { fio: _none, ...rest } = use;
  return { ...rest, nbdfuse, harness: (use.harness ?? 0) - nbdfuse };
}

/** Undoes the pass's volumes in reverse (unstage, unpublish, delete); returns the seconds it took. */
async function teardown(cleanup: Cleanup): Promise<number> {
  const start = performance.now();
  await cleanup.run();
  return round(seconds(start));
}

export async function benchCsi(): Promise<Record<string, unknown>> {
  const opts = options();
  const cleanup = new Cleanup();
  const stopOnSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`${signal}: cleaning up\n`);
    void cleanup.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  try {
    const root = await mkdtemp(join(tmpdir(), 'tandem-bench-csi-'));
    cleanup.add('scratch folder', () =>
      keepState() ? Promise.resolve() : rm(root, { recursive: true, force: true }),
    );
    await startStackControlPlane(join(root, 'control-plane'), cleanup, !keepState());

    const stack = await CsiStack.start(2);
    cleanup.add('CSI stack', () => stack.destroy());
    process.stderr.write(`CSI stack in ${stack.dir}\n`);
    const controller = new CsiClient(stack.controllerSocket);
    cleanup.add('controller client', async () => controller.close());
    const node1 = stack.nodes[0];
    if (node1 === undefined) throw new Error('the stack has no node');
    const node = new CsiClient(node1.nodeSocket);
    cleanup.add('node client', async () => node.close());

    // Ready when the controller sees both data planes' registrations (room for 2 replicas).
    const deadline = Date.now() + 30_000;
    for (;;) {
      const capacity = await controller.call<{ available_capacity: string }>('Controller', 'GetCapacity', {
        volume_capabilities: [capability('mount')],
        parameters: { numberOfReplicas: '2' },
      });
      if (Number(capacity.available_capacity) >= opts.sizeBytes) break;
      if (Date.now() > deadline) throw new Error('the controller sees no room for 2 replicas after 30 s');
      await new Promise((r) => setTimeout(r, 200));
    }

    const refDir = join(root, 'reference');
    await mkdir(refDir, { recursive: true });
    const refSamples = await reference(refDir, opts.sizeBytes, Math.min(opts.volumes, 20), cleanup);
    const referenceP50 = percentile(refSamples, 50);

    const volumes = new Cleanup();
    // Whatever a failed pass leaves is undone before the stack stops.
    cleanup.add('volumes', () => volumes.run());
    const runner = new VolumeRunner(stack, controller, node, node1.name, opts.sizeBytes, volumes);
    // One volume first, not counted: the first calls load code paths (tsx, grpc, mkfs binaries).
    const warmup = await runner.ready('warmup');
    const named = await stackProcs(stack);
    let before = await snapshot();
    const sequential = await pass(runner, 'seq', opts.volumes, 1);
    const cpuSequential = passCpu(before, await snapshot(), named);
    const teardownSequentialS = await teardown(volumes);

    before = await snapshot();
    const concurrent = opts.concurrency > 1 ? await pass(runner, 'conc', opts.volumes, opts.concurrency) : [];
    const cpuConcurrent = passCpu(before, await snapshot(), named);
    const teardownConcurrentS = concurrent.length > 0 ? await teardown(volumes) : undefined;

    const seq = summarize(sequential);
    const n = opts.concurrency;
    const conc = concurrent.length > 0 ? summarize(concurrent) : undefined;
    return {
      bench: 'csi',
      volumes: sequential.length,
      size_bytes: opts.sizeBytes,
      ...seq,
      ...growth(sequential),
      warmup_ready_s: round(warmup.ready),
      reference_p50_s: round(referenceP50),
      reference_p99_s: p(refSamples, 99),
      ready_p50_ratio: round(seq.ready_p50_s / referenceP50, 2),
      ...(conc === undefined
        ? {}
        : {
            [`ready_p50_concurrent${n}_s`]: conc.ready_p50_s,
            [`ready_p99_concurrent${n}_s`]: conc.ready_p99_s,
            [`create_p50_concurrent${n}_s`]: conc.create_p50_s,
            [`publish_p50_concurrent${n}_s`]: conc.publish_p50_s,
            [`stage_p50_concurrent${n}_s`]: conc.stage_p50_s,
            [`retries_concurrent${n}`]: conc.retries,
          }),
      cpu_pct_sequential: cpuSequential,
      ...(conc === undefined ? {} : { [`cpu_pct_concurrent${n}`]: cpuConcurrent }),
      teardown_sequential_s: teardownSequentialS,
      ...(teardownConcurrentS === undefined ? {} : { [`teardown_concurrent${n}_s`]: teardownConcurrentS }),
      target_p99_s: TARGET_P99_S,
      met: seq.ready_p99_s <= TARGET_P99_S,
    };
  } finally {
    await cleanup.run();
    process.off('SIGINT', stopOnSignal);
    process.off('SIGTERM', stopOnSignal);
  }
}
