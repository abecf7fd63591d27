/**
 * The data plane as it runs in a cluster: three replica servers on three simulated nodes (network
 * namespaces), engines as separate `tandem engine` processes, the membership in a Volume resource
 * on a real kube-apiserver, and real NBD clients (fio with crc32c verification, nbdcopy).
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { membershipOf } from '../../driver/engine/kube-membership.js';
import { scrubReplicas } from '../../driver/engine/scrub.js';
import { ReplicaClient, ReplicaError } from '../../driver/replica/client.js';
import { run } from '../../lib/exec.js';
import { silentLogger } from '../../lib/log.js';
import { packageRoot } from '../../lib/paths.js';
import { tandemEntry } from '../harness/cli-process.js';
import { fioJobs, fioVerify as fioVerify24 } from '../harness/fio.js';
import { type EngineProcess, REPLICA_PORT, SimDataPlane } from '../harness/sim-dataplane.js';

jest.setTimeout(240_000);

const SIZE = 64 * 1024 * 1024;
const modes = (sim: SimDataPlane) => async () =>
  (await sim.record()).status?.replicas?.map((r) => `${r.node}:${r.mode}`);

const fioVerify = (uri: string, cwd: string, extra: string[] = []) =>
  fioVerify24(uri, { size: '24M', cwd, extra });

/**
 * The workload a fault is injected into: its write phase must outlast the wait before the fault
 * (0.8 s), or the fault lands in the verify phase, where reads go to one replica only and a dead
 * replica is not noticed. 32 MiB after 1–1.5 s stopped being enough once replicated 4 KiB writes
 * got faster (issue 15): the whole volume, and the fault sooner.
 */
const UNDER_FAULT = `--size=${SIZE}`;

function fioErrors(stdout: string): number {
  return fioJobs(stdout).reduce((sum, j) => sum + j.error, 0);
}

async function expectIdenticalReplicas(sim: SimDataPlane): Promise<void> {
  const secret = await readFile(sim.credentialFile);
  const record = membershipOf(await sim.record());
  const report = await scrubReplicas({ volume: sim.volume, secret, record, log: silentLogger() });
  expect(report.unreachable).toEqual([]);
  expect(report.replicas).toHaveLength(3);
  expect(report.divergent).toEqual([]);
  expect(report.comparedBytes).toBeGreaterThan(0);
  // And byte for byte, by an independent tool, on the replicas' data files.
  const [first, ...others] = sim.replicaNodes.map((n) => join(sim.dataDir(n), sim.volume, 'data'));
  for (const other of others) {
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', first as string, other], {
      allowFailure: true,
    });
    expect(`${other}: ${cmp.stdout.trim()}`).toBe(`${other}: Images are identical.`);
  }
}

async function metrics(engine: EngineProcess): Promise<string> {
  const res = await fetch(`http://${engine.adminAddress}/metrics`);
  return res.text();
}

describe('data plane on simulated nodes', () => {
  let sim: SimDataPlane;
  let engine: EngineProcess;

  beforeAll(async () => {
    sim = await SimDataPlane.start({
      nodes: 4,
      replicas: 3,
      sizeBytes: SIZE,
      engineArgs: ['--request-timeout', '1500ms', '--rebuild-interval', '500ms'],
    });
    engine = await sim.startEngine(sim.network.node('node-4'));
  }, 180_000);

  afterAll(async () => {
    await sim?.destroy();
  });

  it('serves fio with crc32c verification and leaves the three replicas identical', async () => {
    const fio = await fioVerify(engine.uri, sim.dir);
    expect(fio.stderr).not.toMatch(/verify: bad|error/i);
    expect(fio.code).toBe(0);
    expect(fioErrors(fio.stdout)).toBe(0);
    await expectIdenticalReplicas(sim);
  });

  it('keeps writing when a replica is killed with SIGKILL, fences it, then rebuilds it', async () => {
    const before = (await sim.record()).status?.epoch ?? 0;
    const victim = sim.network.node('node-2');
    let finished = false;
    const workload = fioVerify(engine.uri, sim.dir, [UNDER_FAULT]).finally(() => {
      finished = true;
    });
    await sleep(800);
    await sim.replicaServices.get('node-2')?.kill();
    expect(finished).toBe(false); // the replica died under load, not after it
    const fio = await workload;
    expect(fio.code).toBe(0);
    expect(fioErrors(fio.stdout)).toBe(0);
    const fenced = await sim.record();
    expect(fenced.status?.replicas?.find((r) => r.node === 'node-2')?.mode).toBe('Failed');
    expect(fenced.status?.epoch ?? 0).toBeGreaterThan(before);
    expect(await metrics(engine)).toMatch(
      /tandem_engine_replica_state\{[^}]*replica="node-2",state="Failed"[^}]*\} 1/,
    );
    await sim.startReplicaServer(victim);
    await sim.waitForRecord(
      (v) => v.status?.replicas?.every((r) => r.mode === 'ReadWrite') === true,
      60_000,
      'the rebuild of node-2',
    );
    await expectIdenticalReplicas(sim);
    const text = await metrics(engine);
    expect(text).toMatch(/tandem_engine_rebuilds_total\{[^}]*outcome="done"[^}]*\} [1-9]/);
    expect(text).toMatch(/tandem_engine_rebuild_progress_ratio\{[^}]*replica="node-2"[^}]*\} 1/);
    expect(text).toMatch(/tandem_engine_operations_total\{[^}]*op="write",result="ok"[^}]*\} [1-9]/);
  });

  it('fences a replica whose link is cut during writes, and rebuilds it when the link returns', async () => {
    const victim = sim.network.node('node-3');
    let finished = false;
    const workload = fioVerify(engine.uri, sim.dir, [UNDER_FAULT]).finally(() => {
      finished = true;
    });
    await sleep(800);
    await sim.network.cutLink(victim);
    expect(finished).toBe(false);
    const fio = await workload;
    expect(fio.code).toBe(0);
    expect(fioErrors(fio.stdout)).toBe(0);
    expect(await modes(sim)()).toContain('node-3:Failed');
    await sim.network.restoreLink(victim);
    await sim.waitForRecord(
      (v) => v.status?.replicas?.every((r) => r.mode === 'ReadWrite') === true,
      60_000,
      'the rebuild of node-3',
    );
    await expectIdenticalReplicas(sim);
  });

  it('a new engine after SIGKILL of the old one serves every flushed write', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const input = join(sim.dir, 'pattern.bin');
    const output = join(sim.dir, 'readback.bin');
    await writeFile(input, data);
    // nbdcopy flushes the destination before it exits successfully.
    await run('nbdcopy', [input, engine.uri], { timeoutMs: 60_000 });
    await engine.service.kill();
    engine = await sim.startEngine(sim.network.node('node-1'));
    await run('nbdcopy', [engine.uri, output], { timeoutMs: 60_000 });
    expect((await readFile(output)).subarray(0, data.length).equals(data)).toBe(true);
  });

  it('refuses a connection without the credential and one with a stale epoch', async () => {
    const node = sim.replicaNodes[0];
    if (node === undefined) throw new Error('no replica node');
    const address = `${node.address}:${REPLICA_PORT}`;
    const epoch = BigInt((await sim.record()).status?.epoch ?? 0);
    const base = {
      address,
      volume: sim.volume,
      engineId: 'intruder',
      requestTimeoutMs: 2000,
      log: silentLogger(),
    };
    const wrong = ReplicaClient.connect({ ...base, secret: randomBytes(32), epoch });
    await expect(wrong).rejects.toMatchObject({ status: 'AUTH_FAILED' });
    const secret = await readFile(sim.credentialFile);
    const stale = ReplicaClient.connect({ ...base, secret, epoch: epoch - 1n });
    await expect(stale).rejects.toBeInstanceOf(ReplicaError);
    await expect(stale).rejects.toMatchObject({ status: 'STALE_EPOCH' });
    // An engine process with the wrong credential fails to attach and says why.
    const badCredential = join(sim.dir, 'bad-credential');
    await writeFile(badCredential, randomBytes(32));
    await expect(
      sim.startEngine(sim.network.node('node-2'), ['--credential-file', badCredential]),
    ).rejects.toThrow(/AUTH_FAILED|unreachable|did not take/);
  });

  it('an engine that was taken over is fenced: its writes fail, the new engine is unaffected', async () => {
    const old = engine;
    engine = await sim.startEngine(sim.network.node('node-4'));
    const input = join(sim.dir, 'late-write.bin');
    await writeFile(input, randomBytes(1024 * 1024));
    const attempt = await run('nbdcopy', ['--flush', input, old.uri], {
      timeoutMs: 60_000,
      allowFailure: true,
    });
    expect(attempt.code).not.toBe(0);
    const fio = await fioVerify(engine.uri, sim.dir, ['--size=8M']);
    expect(fio.code).toBe(0);
    await old.service.stop();
  });

  it('two engines: B reads what A flushed, and a replica cut off from A only is fenced for B too', async () => {
    await engine.service.stop(); // SIGTERM: the engine leaves the volume record
    // A on node-4 (no replica there), so a route cut in node-4 separates A alone from node-3.
    const a = await sim.startEngine(sim.network.node('node-4'));
    const b = await sim.startEngine(sim.network.node('node-3'), ['--join']);
    engine = a;
    const v = await sim.record();
    expect(v.status?.engines?.map((e) => e.node).sort()).toEqual(['node-3', 'node-4']);

    const first = randomBytes(4 * 1024 * 1024);
    const second = randomBytes(4 * 1024 * 1024);
    const file = (name: string) => join(sim.dir, name);
    await writeFile(file('first.bin'), first);
    await writeFile(file('second.bin'), second);
    await run('nbdcopy', ['--flush', file('first.bin'), a.uri], { timeoutMs: 60_000 });
    await run('nbdcopy', [b.uri, file('b-first.bin')], { timeoutMs: 60_000 });
    expect((await readFile(file('b-first.bin'))).subarray(0, first.length).equals(first)).toBe(true);

    // node-3's replica becomes unreachable from A only; B runs on node-3, next to it.
    const r3 = sim.network.node('node-3');
    const route = ['-n', a.node.netns, 'route', 'add', 'blackhole', `${r3.address}/32`];
    await run('ip', route);
    try {
      await run('nbdcopy', ['--flush', file('second.bin'), a.uri], { timeoutMs: 60_000 });
      expect(await modes(sim)()).toContain('node-3:Failed');
      // B's local replica still holds the first pattern; B must not return it.
      await run('nbdcopy', [b.uri, file('b-second.bin')], { timeoutMs: 60_000 });
      expect((await readFile(file('b-second.bin'))).subarray(0, second.length).equals(second)).toBe(true);
    } finally {
      await run('ip', ['-n', a.node.netns, 'route', 'del', 'blackhole', `${r3.address}/32`]);
    }
    // No rebuild while two engines share the volume, even with the replica reachable again.
    await sleep(3000);
    expect(await modes(sim)()).toContain('node-3:Failed');
    await b.service.stop();
    await sim.waitForRecord(
      (x) => x.status?.replicas?.every((r) => r.mode === 'ReadWrite') === true,
      60_000,
      'the rebuild after B left',
    );
    await expectIdenticalReplicas(sim);
  });

  it('an engine hosted by the data-plane process serves fio with its local replica in-process', async () => {
    await engine.service.stop();
    const hosted = await sim.startHostedEngine(sim.network.node('node-1'), {
      requestTimeoutMs: 1500,
      rebuildIntervalMs: 500,
    });
    let finished = false;
    const workload = fioVerify(hosted.uri, sim.dir, [UNDER_FAULT]).finally(() => {
      finished = true;
    });
    await sleep(800);
    await sim.replicaServices.get('node-2')?.kill();
    expect(finished).toBe(false);
    const fio = await workload;
    expect(fio.code).toBe(0);
    expect(fioErrors(fio.stdout)).toBe(0);
    expect(await modes(sim)()).toContain('node-2:Failed');
    await sim.startReplicaServer(sim.network.node('node-2'));
    await sim.waitForRecord(
      (v) => v.status?.replicas?.every((r) => r.mode === 'ReadWrite') === true,
      60_000,
      'the rebuild of node-2',
    );
    await expectIdenticalReplicas(sim);
    expect(await metrics(hosted)).toMatch(
      /tandem_engine_operations_total\{[^}]*op="write",result="ok"[^}]*\} [1-9]/,
    );
    await sim.stopHostedEngine(hosted);
    engine = await sim.startEngine(sim.network.node('node-4'));
  });

  it('scrub reports a block that differs on one replica (command and metric)', async () => {
    const node2 = sim.network.node('node-2');
    const dataFile = join(sim.dataDir(node2), sim.volume, 'data');
    const handle = await open(dataFile, 'r+');
    await handle.write(randomBytes(4096), 0, 4096, 5 * 1024 * 1024 + 8192);
    await handle.close();
    const scrub = await run(
      process.execPath,
      [
        ...tandemEntry(),
        'scrub',
        '--volume',
        sim.volume,
        '--kubeconfig',
        sim.kubeconfigPath,
        '--credential-file',
        sim.credentialFile,
      ],
      { allowFailure: true, timeoutMs: 60_000, cwd: packageRoot() },
    );
    expect(scrub.code).toBe(1);
    const report = JSON.parse(scrub.stdout) as { divergent: { offset: number; nodes: string[] }[] };
    expect(report.divergent).toEqual([
      expect.objectContaining({ offset: 5 * 1024 * 1024, nodes: ['node-2'] }),
    ]);
    const viaEngine = await fetch(`http://${engine.adminAddress}/scrub`, { method: 'POST' });
    expect(((await viaEngine.json()) as { divergent: unknown[] }).divergent).toHaveLength(1);
    expect(await metrics(engine)).toMatch(/tandem_engine_scrub_divergent_blocks\{[^}]*\} 1/);
  });
});
