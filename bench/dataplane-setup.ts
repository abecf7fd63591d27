/**
 * The pieces the data-plane benchmark runs against, started as real processes: nbdkit's file
 * plugin (the reference), `tandem dataplane` replica servers (on loopback, or one per simulated
 * node), and `tandem engine` processes whose membership lives in a Volume resource on a real
 * kube-apiserver. The Tandem CLI runs compiled (tsc into .cache/bench-dist), not through tsx.
 */

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ControlPlane, startControlPlane } from '../lab/control-plane.js';
import { SimulatedNetwork, type SimulatedNode } from '../lab/netns.js';
import { API_VERSION, VOLUME_KIND } from '../lib/api/volume.js';
import { run } from '../lib/exec.js';
import { loadKubeConfig } from '../lib/kube/client.js';
import { installCrds } from '../lib/kube/manifests.js';
import { VolumeClient } from '../lib/kube/volumes.js';
import { manifestsDir, packageRoot } from '../lib/paths.js';
import { freePort } from '../lib/ports.js';
import { canConnect, waitFor } from '../lib/readiness.js';
import { Service } from '../lib/service.js';
import type { Proc } from './cpu.js';
import { nbdUri } from './fio.js';

/** Undo steps, run in reverse order; each step's failure is reported and the rest still run. */
export class Cleanup {
  readonly #steps: { name: string; run: () => Promise<unknown> }[] = [];

  add(name: string, step: () => Promise<unknown>): void {
    this.#steps.push({ name, run: step });
  }

  async run(): Promise<void> {
    while (this.#steps.length > 0) {
      const step = this.#steps.pop();
      if (step === undefined) break;
      try {
        await step.run();
      } catch (err) {
        process.stderr.write(`cleanup ${step.name}: ${(err as Error).message}\n`);
      }
    }
  }
}

export interface BenchEnv {
  root: string;
  cli: string;
  network: SimulatedNetwork;
  controlPlane: ControlPlane;
  volumes: VolumeClient;
  cleanup: Cleanup;
}

/** Compiles the CLI into .cache/bench-dist (incremental) and returns its entry point. */
export async function buildCli(): Promise<string> {
  const root = packageRoot();
  const out = join(root, '.cache', 'bench-dist');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const args = ['-p', 'tsconfig.build.json', '--outDir', out, '--incremental'];
  const built = await run(process.execPath, [tsc, ...args, '--tsBuildInfoFile', join(out, '.tsbuildinfo')], {
    cwd: root,
    timeoutMs: 180_000,
    allowFailure: true,
  });
  const main = join(out, 'cli', 'main.js');
  // tsc emits despite type errors; a tree with some mid-edit is still measured, with a warning.
  if (built.code !== 0)
    process.stderr.write(`tsc reported errors (using its output anyway):\n${built.stdout}`);
  if (!existsSync(main)) throw new Error(`tsc produced no ${main}`);
  return main;
}

/** Scratch folder, three simulated nodes, a control plane on the bridge address with the CRDs. */
export async function startEnvironment(cleanup: Cleanup): Promise<BenchEnv> {
  const cli = await buildCli();
  const root = await mkdtemp(join(tmpdir(), 'tandem-bench-dp-'));
  cleanup.add('scratch folder', () => rm(root, { recursive: true, force: true }));
  const network = await SimulatedNetwork.create({ nodes: 3 });
  cleanup.add('simulated network', () => network.destroy());
  const controlPlane = await startControlPlane({
    dir: join(root, 'control-plane'),
    bindAddress: network.hostAddress,
  });
  cleanup.add('control plane', () => controlPlane.stop());
  const kc = loadKubeConfig(controlPlane.kubeconfigPath);
  await installCrds(kc, join(manifestsDir(), 'crds'));
  return { root, cli, network, controlPlane, volumes: new VolumeClient(kc), cleanup };
}

async function logTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-15).join('\n');
}

/** A started Service, stopped by the cleanup stack; the error on failure carries its log tail. */
async function startService(
  env: BenchEnv,
  name: string,
  node: SimulatedNode | undefined,
  command: string,
  args: string[],
  ready: (service: Service) => Promise<void>,
): Promise<Service> {
  const logFile = join(env.root, 'logs', `${name}.log`);
  await mkdir(join(env.root, 'logs'), { recursive: true });
  const options = { name, command, args, logFile, stopGraceMs: 10_000 };
  const service = node === undefined ? new Service(options) : env.network.spawn(node, options);
  env.cleanup.add(name, () => service.stop());
  try {
    await ready(service);
  } catch (err) {
    await service.stop();
    throw new Error(`${(err as Error).message}\n--- ${logFile}:\n${await logTail(logFile)}`);
  }
  return service;
}

export interface NbdTarget {
  uri: string;
  /** The processes serving it, for CPU accounting. */
  processes(): Proc[];
  stop(): Promise<unknown>;
}

/** nbdkit's file plugin serving a preallocated-size sparse file in the scratch folder. */
export async function startNbdkit(env: BenchEnv, sizeBytes: number): Promise<NbdTarget> {
  const dir = join(env.root, 'nbdkit');
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'disk.img');
  const handle = await open(file, 'w');
  await handle.truncate(sizeBytes);
  await handle.close();
  const socket = join(dir, 'nbd.sock');
  const args = ['--unix', socket, '--foreground', '--exit-with-parent', 'file', file];
  const service = await startService(env, 'nbdkit', undefined, 'nbdkit', args, (s) =>
    waitFor(
      'nbdkit socket',
      () => canConnect({ path: socket }),
      15_000,
      () => s.running,
    ),
  );
  return {
    uri: nbdUri(socket),
    processes: () => [{ name: 'nbdkit', pid: service.pid }],
    stop: () => service.stop(),
  };
}

export interface ReplicaServer {
  nodeId: string;
  dataDir: string;
  /** Where the server writes its CPU profile (when started with one). */
  profileDir: string | undefined;
  address: string;
  /** The data-plane admin endpoint (engines hosted in this process start here). */
  adminAddress: string;
  logFile: string;
  service: Service;
  /** SIGKILL, as a crash would. */
  kill(): Promise<unknown>;
  /** Starts the server again on the same address and data. */
  restart(): Promise<void>;
}

/**
 * `tandem dataplane` servers: `count` of them on loopback in the root namespace (node ids
 * node-1...), or one per simulated node on the node's own address.
 */
export async function startReplicaServers(
  env: BenchEnv,
  prefix: string,
  placement: 'loopback' | 'nodes',
  count: number,
  profile = false,
): Promise<ReplicaServer[]> {
  const servers: ReplicaServer[] = [];
  for (let i = 1; i <= count; i++) {
    const nodeId = `node-${i}`;
    const node = placement === 'nodes' ? env.network.node(nodeId) : undefined;
    const host = node?.address ?? '127.0.0.1';
    const port = node === undefined ? await freePort() : 9500;
    const metricsPort = node === undefined ? await freePort() : 9503;
    const adminPort = node === undefined ? await freePort() : 9505;
    const dataDir = join(env.root, prefix, nodeId);
    await mkdir(dataDir, { recursive: true });
    const profileDir = profile ? join(env.root, prefix, `${nodeId}-profile`) : undefined;
    const args = [
      ...(profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]),
      env.cli,
      'dataplane',
      `--node-id=${nodeId}`,
      `--listen=${host}:${port}`,
      `--data-dir=${dataDir}`,
      `--metrics-address=${host}:${metricsPort}`,
      `--admin-address=${host}:${adminPort}`,
      `--kubeconfig=${env.controlPlane.kubeconfigPath}`,
    ];
    let generation = 0;
    const firstLog = join(env.root, 'logs', `${prefix}-dataplane-${nodeId}-0.log`);
    const start = () =>
      startService(env, `${prefix}-dataplane-${nodeId}-${generation++}`, node, process.execPath, args, (s) =>
        waitFor(
          `replica server ${nodeId}`,
          () => canConnect({ host, port }),
          30_000,
          () => s.running,
        ),
      );
    const server: ReplicaServer = {
      nodeId,
      dataDir,
      profileDir,
      address: `${host}:${port}`,
      adminAddress: `${host}:${adminPort}`,
      logFile: firstLog,
      service: await start(),
      kill: () => server.service.kill(),
      restart: async () => {
        server.service = await start();
      },
    };
    servers.push(server);
  }
  return servers;
}

/** Engine metrics ports inside a simulated node (freePort only sees the root namespace). */
let nextNodePort = 9510;

export interface TandemVolume extends NbdTarget {
  volume: string;
  metricsUrl: string;
  engine: Service;
  engineLog: string;
  /** Where the engine wrote its CPU profile (when started with one). */
  profileDir: string | undefined;
  /** The engine runs inside node-1's data-plane process (the production layout). */
  hosted: boolean;
}

export interface VolumeOptions {
  volume: string;
  sizeBytes: number;
  /** Run the engine inside the first server's simulated node (else in the root namespace). */
  engineNode?: SimulatedNode;
  profile?: boolean;
}

/**
 * A volume with one replica on each server (`tandem replica create`), its Volume resource at epoch
 * 1 with every replica ReadWrite, and `tandem engine` serving it on a unix socket. The engine runs
 * on node-1, whose replica is local to it (reads go there first).
 */
export async function startVolume(
  env: BenchEnv,
  servers: readonly ReplicaServer[],
  options: VolumeOptions,
): Promise<TandemVolume> {
  const { volume, sizeBytes } = options;
  const dir = join(env.root, volume);
  await mkdir(dir, { recursive: true });
  const credential = join(dir, 'credential');
  await writeFile(credential, randomBytes(32), { mode: 0o600 });
  for (const server of servers) {
    await run(
      process.execPath,
      [
        env.cli,
        'replica',
        'create',
        `--data-dir=${server.dataDir}`,
        `--volume=${volume}`,
        `--size=${sizeBytes}`,
        `--credential-file=${credential}`,
      ],
      { timeoutMs: 30_000 },
    );
  }
  const created = await env.volumes.create({
    apiVersion: API_VERSION,
    kind: VOLUME_KIND,
    metadata: { name: volume },
    spec: { sizeBytes, numberOfReplicas: servers.length, accessMode: 'ReadWriteOnce', volumeMode: 'Block' },
  });
  await env.volumes.replaceStatus({
    ...created,
    status: {
      epoch: 1,
      replicas: servers.map((s) => ({ node: s.nodeId, address: s.address, mode: 'ReadWrite' as const })),
      engines: [],
    },
  });

  const socket = join(dir, 'nbd.sock');
  const [first] = servers;
  if (HOSTED_ENGINES && first !== undefined)
    return startHostedEngine(env, first, servers, volume, credential, socket);
  const metricsHost = options.engineNode?.address ?? '127.0.0.1';
  const metricsPort = options.engineNode === undefined ? await freePort() : nextNodePort++;
  const profileDir = options.profile === true ? join(dir, 'profile') : undefined;
  const nodeArgs = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  const args = [
    ...nodeArgs,
    env.cli,
    'engine',
    '--node-id=node-1',
    `--volume=${volume}`,
    `--credential-file=${credential}`,
    `--nbd-socket=${socket}`,
    `--kubeconfig=${env.controlPlane.kubeconfigPath}`,
    `--metrics-address=${metricsHost}:${metricsPort}`,
    '--rebuild-interval=500ms',
  ];
  const name = `${volume}-engine`;
  const engineLog = join(env.root, 'logs', `${name}.log`);
  const engine = await startService(env, name, options.engineNode, process.execPath, args, (s) =>
    waitFor(
      `engine of ${volume}`,
      async () => (await readFile(engineLog, 'utf8')).includes('"engine serving"') && existsSync(socket),
      60_000,
      () => s.running,
    ),
  );
  return {
    volume,
    uri: nbdUri(socket, volume),
    metricsUrl: `http://${metricsHost}:${metricsPort}/metrics`,
    engine,
    engineLog,
    profileDir,
    processes: () => [
      { name: 'engine', pid: engine.pid },
      ...servers.map((s) => ({ name: `replica ${s.nodeId}`, pid: s.service.pid })),
    ],
    stop: () => engine.stop(),
    hosted: false,
  };
}

/**
 * TANDEM_BENCH_ENGINE=process runs `tandem engine` as its own process (every replica over TCP);
 * the default hosts the engine in node-1's `tandem dataplane`, where it reaches the local replica
 * by direct calls — how a node runs it.
 */
const HOSTED_ENGINES = process.env.TANDEM_BENCH_ENGINE !== 'process';

async function startHostedEngine(
  env: BenchEnv,
  host: ReplicaServer,
  servers: readonly ReplicaServer[],
  volume: string,
  credentialFile: string,
  socket: string,
): Promise<TandemVolume> {
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`http://${host.adminAddress}${path}`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`POST ${path} on ${host.nodeId}: ${res.status} ${await res.text()}`);
  };
  await post('/engines', { volume, credentialFile, nbdSocket: socket, rebuildIntervalMs: 500 });
  env.cleanup.add(`${volume}-engine`, () => post('/engines/stop', { volume }).catch(() => undefined));
  return {
    volume,
    uri: nbdUri(socket, volume),
    metricsUrl: `http://${host.adminAddress}/metrics`,
    engine: host.service,
    engineLog: host.logFile,
    profileDir: host.profileDir,
    processes: () => [
      { name: `engine + replica ${host.nodeId}`, pid: host.service.pid },
      ...servers.filter((s) => s !== host).map((s) => ({ name: `replica ${s.nodeId}`, pid: s.service.pid })),
    ],
    stop: () => post('/engines/stop', { volume }),
    hosted: true,
  };
}
