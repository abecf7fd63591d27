/**
 * The randomized fault campaign (issue 16): real data planes on simulated nodes (network
 * namespaces), a real kube-apiserver holding the Volume records, three volumes written by
 * verifying ledgers (ledger.ts) while faults drawn from a seed hit replica servers, engine hosts,
 * engine processes, links and disks. After each trial's faults end it waits for the volumes to
 * converge and checks every acknowledged write, the replicas' range hashes and the engines.
 *
 * The volumes: `vol-hosted`, its engine inside the engine host's data plane (as the DaemonSet
 * runs engines); `vol-process`, a `tandem engine` process on the engine node; `vol-migrating`,
 * live-migrated back and forth between two replica nodes' data planes during trials (a second
 * engine joins, the ledger moves to it as a VM would, the source leaves — or the join is rolled
 * back). The campaign plays the controller where one is needed: it restarts a killed data
 * plane, and starts a replacement engine (takeover) for a volume whose engine died, as the CSI
 * controller's attach would; the real controller and migrator are not in this campaign yet.
 */
import { readFile, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { membershipOf } from '../../driver/engine/kube-membership.js';
import { scrubReplicas } from '../../driver/engine/scrub.js';
import type { SimulatedNode } from '../../lab/netns.js';
import type { Volume } from '../../lib/api/volume.js';
import { run } from '../../lib/exec.js';
import { silentLogger } from '../../lib/log.js';
import { seededRandom } from '../harness/random.js';
import { type EngineProcess, SimDataPlane } from '../harness/sim-dataplane.js';
import {
  drawFaults,
  FAULT_KINDS,
  type Fault,
  type FaultKind,
  REQUEST_TIMEOUT_MS,
  type Topology,
} from './faults.js';
import { BLOCK, Ledger } from './ledger.js';

const SIZE = 64 * 1024 * 1024;
const LEDGER_BLOCKS = 4096; // 16 MiB of each volume
const FAULT_WINDOW_MS = 8000;
/** How long the volumes get to converge after the last fault ended. */
const CONVERGE_MS = 90_000;

const TOPOLOGY: Topology = {
  replicaOnly: ['node-2', 'node-3'],
  engineHost: 'node-1',
  engineNode: 'node-4',
  diskNodes: ['node-2', 'node-3'],
};

export interface TrialResult {
  trial: number;
  seed: number;
  faults: Fault[];
  migration?: 'confirmed' | 'rolled-back' | 'refused';
  lost: number;
  corrupt: number;
  divergent: number;
  unconverged: string[];
  recoveryMs?: number;
  /** Where the trial's time went: the fault window, convergence (and the rest of the window), the checks. */
  phasesMs?: { faults: number; converge: number; check: number };
  problems: string[];
}

export interface CampaignSummary {
  trials: number;
  seed: number;
  faults: Partial<Record<FaultKind, number>>;
  /** Live migrations of vol-migrating by outcome. */
  migrations: Record<string, number>;
  lost_acknowledged_writes: number;
  corrupt_blocks: number;
  divergent_replicas: number;
  unconverged: number;
  recovery_p50_s: number | null;
  recovery_p99_s: number | null;
  acknowledged_writes: number;
  indeterminate_writes: number;
  failed_trials: { trial: number; seed: number; problems: string[] }[];
}

interface Workload {
  sim: SimDataPlane;
  ledger: Ledger;
  /** The engine the ledger writes through now, and any other engine of the volume. */
  engine: EngineProcess;
  peer?: EngineProcess;
  hosted: boolean;
}

/** The seed of trial `n` of a campaign seeded `seed`: a failed trial replays from it alone. */
export function trialSeed(seed: number, n: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(n + 1, 0xc2b2ae35)) >>> 0;
}

export class Campaign {
  readonly #log: (line: string) => void;
  #base: SimDataPlane | undefined;
  readonly #workloads = new Map<string, Workload>();

  constructor(log: (line: string) => void) {
    this.#log = log;
  }

  async setUp(): Promise<void> {
    const base = await SimDataPlane.start({
      nodes: 4,
      replicas: 3,
      sizeBytes: SIZE,
      volume: 'vol-process',
      engineArgs: ['--request-timeout', `${REQUEST_TIMEOUT_MS}ms`, '--rebuild-interval', '500ms'],
      tmpfsBytes: 512 * 1024 * 1024,
    });
    this.#base = base;
    const node = (name: string) => base.network.node(name);
    const hostedSpec = { requestTimeoutMs: REQUEST_TIMEOUT_MS, rebuildIntervalMs: 500 };
    const processEngine = await base.startEngine(node(TOPOLOGY.engineNode));
    const hosted = await base.withVolume('vol-hosted');
    const hostedEngine = await hosted.startHostedEngine(node(TOPOLOGY.engineHost), hostedSpec);
    const migrating = await base.withVolume('vol-migrating');
    const migratingEngine = await migrating.startHostedEngine(node('node-2'), hostedSpec);
    for (const [sim, engine, isHosted] of [
      [base, processEngine, false],
      [hosted, hostedEngine, true],
      [migrating, migratingEngine, true],
    ] as const) {
      const workload: Workload = {
        sim,
        engine,
        hosted: isHosted,
        ledger: new Ledger({
          blocks: LEDGER_BLOCKS,
          depth: 4,
          target: () => workload.engine.socket,
          exportName: sim.volume,
          random: Math.random,
        }),
      };
      this.#workloads.set(sim.volume, workload);
    }
  }

  async tearDown(): Promise<void> {
    await this.#base?.destroy();
  }

  /** One trial: workloads, faults (and perhaps a migration), convergence, checks. */
  async trial(n: number, seed: number, kinds: readonly FaultKind[] = FAULT_KINDS): Promise<TrialResult> {
    const random = seededRandom(seed);
    const faults = drawFaults(random, TOPOLOGY, FAULT_WINDOW_MS, kinds);
    const result: TrialResult = {
      trial: n,
      seed,
      faults,
      lost: 0,
      corrupt: 0,
      divergent: 0,
      unconverged: [],
      problems: [],
    };
    const migrate = random() < 0.5;
    const migrationAt = Math.round(random() * FAULT_WINDOW_MS * 0.5);
    const rollBack = random() < 0.3;
    this.#log(
      `trial ${n} seed ${seed}: ${faults.map((f) => `${f.kind}@${f.node}+${f.atMs}ms/${f.forMs}ms`).join(', ')}${migrate ? `, migration${rollBack ? ' (rolled back)' : ''}@${migrationAt}ms` : ''}`,
    );
    for (const w of this.#workloads.values()) w.ledger.start();
    const started = Date.now();
    const healed: Promise<void>[] = faults.map(async (f) => {
      await sleep(f.atMs);
      await this.#apply(f);
    });
    if (migrate)
      healed.push(
        (async () => {
          await sleep(migrationAt);
          result.migration = await this.#migrate(random, rollBack).catch((err: unknown) => {
            result.problems.push(`migration: ${(err as Error).message}`);
            return undefined;
          });
        })(),
      );
    const outcomes = await Promise.allSettled(healed);
    for (const o of outcomes)
      if (o.status === 'rejected') result.problems.push(`fault: ${(o.reason as Error).message}`);
    // Recovery: from the moment the last fault ended (node back, link up, disk given back) to
    // every volume converged, while the ledgers keep writing.
    const healedAt = Date.now();
    await this.#restoreServers();
    const converged = await this.#converge(result);
    if (converged) result.recoveryMs = Date.now() - healedAt;
    const rest = FAULT_WINDOW_MS - (Date.now() - started);
    if (rest > 0) await sleep(rest);
    const checkedAt = Date.now();
    const workloads = [...this.#workloads.values()];
    await Promise.all(workloads.map((w) => w.ledger.stop()));
    await Promise.all(
      workloads.map(async (w) => {
        try {
          const check = await w.ledger.check(w.engine.socket);
          result.lost += check.lost;
          result.corrupt += check.corrupt;
          for (const e of check.examples) result.problems.push(`${w.sim.volume}: ${e}`);
        } catch (err) {
          result.problems.push(
            `${w.sim.volume}: the check could not read the volume: ${(err as Error).message}`,
          );
        }
        if (converged) result.divergent += await this.#divergent(w, result);
      }),
    );
    result.phasesMs = {
      faults: healedAt - started,
      converge: checkedAt - healedAt,
      check: Date.now() - checkedAt,
    };
    return result;
  }

  summary(seed: number, results: TrialResult[]): CampaignSummary {
    const faults: Partial<Record<FaultKind, number>> = {};
    const migrations: Record<string, number> = {};
    for (const r of results) {
      for (const f of r.faults) faults[f.kind] = (faults[f.kind] ?? 0) + 1;
      if (r.migration !== undefined) migrations[r.migration] = (migrations[r.migration] ?? 0) + 1;
    }
    const recoveries = results
      .flatMap((r) => (r.recoveryMs === undefined ? [] : [r.recoveryMs]))
      .sort((a, b) => a - b);
    const quantile = (q: number) =>
      recoveries.length === 0
        ? null
        : Number(
            (
              (recoveries[Math.min(recoveries.length - 1, Math.ceil(q * recoveries.length) - 1)] ?? 0) / 1000
            ).toFixed(2),
          );
    const stats = [...this.#workloads.values()].map((w) => w.ledger.stats);
    return {
      trials: results.length,
      seed,
      faults,
      migrations,
      lost_acknowledged_writes: results.reduce((s, r) => s + r.lost, 0),
      corrupt_blocks: results.reduce((s, r) => s + r.corrupt, 0),
      divergent_replicas: results.reduce((s, r) => s + r.divergent, 0),
      unconverged: results.reduce((s, r) => s + r.unconverged.length, 0),
      recovery_p50_s: quantile(0.5),
      recovery_p99_s: quantile(0.99),
      acknowledged_writes: stats.reduce((s, x) => s + x.acknowledged, 0),
      indeterminate_writes: stats.reduce((s, x) => s + x.indeterminate, 0),
      failed_trials: results
        .filter(failed)
        .map((r) => ({ trial: r.trial, seed: r.seed, problems: r.problems.slice(0, 8) })),
    };
  }

  #node(name: string): SimulatedNode {
    if (this.#base === undefined) throw new Error('the campaign is not set up');
    return this.#base.network.node(name);
  }

  async #apply(f: Fault): Promise<void> {
    const base = this.#base;
    if (base === undefined) return;
    const node = this.#node(f.node);
    switch (f.kind) {
      case 'kill-replica-server':
      case 'kill-engine-host': {
        await base.replicaServices.get(f.node)?.kill();
        await sleep(f.forMs);
        await base.startReplicaServer(node);
        await this.#replaceEnginesOn(f.node);
        return;
      }
      case 'kill-engine-process': {
        const w = this.#workloads.get('vol-process');
        if (w === undefined || w.engine.node.name !== f.node) return;
        await w.engine.service.kill();
        await sleep(f.forMs);
        w.engine = await this.#retry(() => w.sim.startEngine(node), 'restart the engine process');
        return;
      }
      case 'cut-link-short':
      case 'cut-link-long':
        await base.network.cutLink(node);
        await sleep(f.forMs);
        await base.network.restoreLink(node);
        return;
      case 'disk-full': {
        // Another tenant fills the disk: a ballast file takes every free block, so the replica's
        // next allocation (a block the ledger zeroed, a rebuild) fails with ENOSPC.
        const ballast = join(base.dataDir(node), 'ballast');
        await run('fallocate', ['-l', String(await freeBytes(base.dataDir(node))), ballast], {
          allowFailure: true,
        });
        await sleep(f.forMs);
        await rm(ballast, { force: true });
        return;
      }
    }
  }

  /** After a data plane was killed: every volume whose engine lived there gets a new one. */
  async #replaceEnginesOn(nodeName: string): Promise<void> {
    for (const w of this.#workloads.values()) {
      if (!w.hosted) continue;
      const lostEngine = w.engine.node.name === nodeName;
      const lostPeer = w.peer?.node.name === nodeName;
      if (!lostEngine && !lostPeer) continue;
      // A takeover (not a join) by the engine that stays, or a new one where the dead one ran:
      // the new epoch fences whatever the dead process left in the record.
      const at = lostEngine ? (w.peer?.node ?? w.engine.node) : w.engine.node;
      const survivors = [w.engine, w.peer].filter(
        (e): e is EngineProcess => e !== undefined && e.node.name !== nodeName,
      );
      w.peer = undefined;
      // The survivor leaves first: a data plane hosts one engine per volume.
      for (const e of survivors) await w.sim.stopHostedEngine(e).catch(() => undefined);
      w.engine = await this.#retry(
        () => w.sim.startHostedEngine(at, { requestTimeoutMs: REQUEST_TIMEOUT_MS, rebuildIntervalMs: 500 }),
        `start an engine for ${w.sim.volume} on ${at.name}`,
      );
    }
  }

  /** Moves vol-migrating's engine to the other replica node, as a live migration does. */
  async #migrate(random: () => number, rollBack: boolean): Promise<'confirmed' | 'rolled-back' | 'refused'> {
    const w = this.#workloads.get('vol-migrating');
    if (w === undefined) throw new Error('no migrating volume');
    const to = this.#node(w.engine.node.name === 'node-2' ? 'node-3' : 'node-2');
    const source = w.engine;
    let target: EngineProcess;
    try {
      target = await w.sim.startHostedEngine(to, {
        join: true,
        requestTimeoutMs: REQUEST_TIMEOUT_MS,
        rebuildIntervalMs: 500,
      });
    } catch (err) {
      // By design a second engine joins only if it reaches every replica (docs/dataplane.md):
      // a replica cut off or out of space refuses the migration, and the VM stays where it is —
      // what KubeVirt does with a migration whose target fails to start.
      if (/unreachable|cannot join/.test((err as Error).message)) return 'refused';
      throw err;
    }
    w.peer = target;
    await sleep(500 + random() * 2000);
    if (w.peer !== target) return 'rolled-back'; // a fault replaced the engines meanwhile
    if (rollBack) {
      w.peer = undefined;
      await w.sim.stopHostedEngine(target);
      return 'rolled-back';
    }
    // The VM switches over: the ledger writes through the target, then the source leaves.
    w.engine = target;
    w.peer = undefined;
    await w.sim.stopHostedEngine(source).catch(() => undefined);
    return 'confirmed';
  }

  async #restoreServers(): Promise<void> {
    const base = this.#base;
    if (base === undefined) return;
    for (const node of base.replicaNodes) {
      if (base.replicaServices.get(node.name)?.running) continue;
      await base.startReplicaServer(node);
      await this.#replaceEnginesOn(node.name);
    }
  }

  /** Waits until every volume has one engine and three readable replicas. */
  async #converge(result: TrialResult): Promise<boolean> {
    const deadline = Date.now() + CONVERGE_MS;
    let last: Volume[] = [];
    while (Date.now() < deadline) {
      last = await Promise.all([...this.#workloads.values()].map((w) => w.sim.record()));
      if (last.every(converged)) return true;
      await sleep(250);
    }
    for (const v of last)
      if (!converged(v)) {
        result.unconverged.push(v.metadata?.name ?? '?');
        result.problems.push(
          `${v.metadata?.name}: not converged after ${CONVERGE_MS} ms: ${JSON.stringify(v.status)}`,
        );
      }
    return false;
  }

  async #divergent(w: Workload, result: TrialResult): Promise<number> {
    const secret = await readFile(w.sim.credentialFile);
    const record = membershipOf(await w.sim.record());
    const report = await scrubReplicas({ volume: w.sim.volume, secret, record, log: silentLogger() });
    if (report.unreachable.length > 0)
      result.problems.push(`${w.sim.volume}: scrub could not reach ${JSON.stringify(report.unreachable)}`);
    for (const d of report.divergent)
      result.problems.push(`${w.sim.volume}: replicas differ at ${d.offset} (${d.nodes.join(', ')})`);
    return report.divergent.length;
  }

  async #retry<T>(work: () => Promise<T>, what: string): Promise<T> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        return await work();
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`could not ${what}: ${(err as Error).message}`);
        await sleep(500);
      }
    }
  }
}

async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return Number(s.bavail) * Number(s.bsize);
}

function converged(v: Volume): boolean {
  const s = v.status;
  return (
    s?.engines?.length === 1 && s.replicas?.length === 3 && s.replicas.every((r) => r.mode === 'ReadWrite')
  );
}

export function failed(r: TrialResult): boolean {
  return r.lost > 0 || r.corrupt > 0 || r.divergent > 0 || r.unconverged.length > 0 || r.problems.length > 0;
}

export { BLOCK };
