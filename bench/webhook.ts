import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig, StorageV1Api } from '@kubernetes/client-node';
import { startControlPlane } from '../lab/control-plane.js';
import { loadKubeConfig } from '../lib/kube/client.js';
import { installCrds } from '../lib/kube/manifests.js';
import { manifestsDir, packageRoot } from '../lib/paths.js';
import { freePort } from '../lib/ports.js';
import { spawnTandem } from '../test/harness/cli-process.js';
import { registerWebhookConfigurations } from '../test/harness/webhook-registration.js';
import { percentile, round, summary } from './stats.js';

/**
 * `npm run bench -- webhook`
 * (a) direct: HTTPS keep-alive load on the webhook, open loop at 1,000 req/s,
 *     against a bare HTTPS endpoint answering a fixed review (the reference,
 *     same machine, same run); plus the closed-loop maximum rate.
 * (b) end to end: pods created through a real kube-apiserver, alternating a
 *     namespace the webhook applies to and one it skips, so both see the same
 *     apiserver and etcd at the same moment.
 */

const TARGET_RPS = 1_000;
const DIRECT_SECONDS = 5;
const E2E_PODS = Number(process.env.TANDEM_BENCH_PODS ?? 300);

const claimReview = JSON.stringify({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'bench',
    kind: { group: '', version: 'v1', kind: 'PersistentVolumeClaim' },
    operation: 'CREATE',
    namespace: 'bench',
    name: 'disk',
    object: {
      metadata: { name: 'disk' },
      spec: { storageClassName: 'tandem', accessModes: ['ReadWriteOnce'], volumeMode: 'Block' },
    },
  },
});

interface Child {
  child: ChildProcess;
  port: number;
  /** Everything the child printed so far: its port, then V8's --trace-gc lines. */
  output: () => string;
}

function startChild(args: string[]): Promise<Child> {
  const child = spawn(process.execPath, ['--trace-gc', '--import', 'tsx', ...args], {
    cwd: packageRoot(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let text = '';
  return new Promise((resolve, reject) => {
    let port: number | undefined;
    child.stdout?.on('data', (d: Buffer) => {
      text += String(d);
      // The port is the first line that is only digits (GC trace lines may come first).
      const line = port === undefined ? /^(\d+)$/m.exec(text) : null;
      if (line !== null) {
        port = Number(line[1]);
        resolve({ child, port, output: () => text });
      }
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

/** Collections in a stretch of --trace-gc output: young (Scavenge), full (Mark-Compact), pauses. */
function gcSummary(trace: string): {
  scavenges: number;
  markCompacts: number;
  pauseMs: number;
  maxPauseMs: number;
} {
  const lines = trace.split('\n').filter((l) => l.includes('Scavenge') || l.includes('Mark-Compact'));
  // "[pid:addr] 1234 ms: Scavenge 5.1 (6.2) -> 4.3 (7.2) MB, 0.81 / 0.00 ms ..." (pause, then its parallel part)
  const pauses = lines.map((l) => Number(/MB, ([\d.]+) \/ [\d.]+ ms/.exec(l)?.[1] ?? 0));
  return {
    scavenges: lines.filter((l) => l.includes('Scavenge')).length,
    markCompacts: lines.filter((l) => l.includes('Mark-Compact')).length,
    pauseMs: round(
      pauses.reduce((a, b) => a + b, 0),
      1,
    ),
    maxPauseMs: round(Math.max(0, ...pauses), 2),
  };
}

function post(agent: Agent, port: number, body: string): Promise<number> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/validate',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 200
            ? resolve(Number(process.hrtime.bigint() - started) / 1e6)
            : reject(new Error(`HTTP ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends at a fixed rate regardless of replies (open loop); returns each request's latency in ms. */
async function openLoop(
  agent: Agent,
  port: number,
  rate: number,
  seconds: number,
): Promise<{ latencies: number[]; achievedRps: number }> {
  const total = rate * seconds;
  const pending: Promise<number>[] = [];
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(post(agent, port, claimReview));
  }
  const latencies = await Promise.all(pending);
  const achievedRps = total / ((performance.now() - start) / 1000);
  return { latencies, achievedRps };
}

/** As fast as 32 concurrent keep-alive requests go (closed loop): the maximum rate. */
async function closedLoop(agent: Agent, port: number, seconds: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (performance.now() < end) {
        await post(agent, port, claimReview);
        done++;
      }
    }),
  );
  return done / seconds;
}

async function direct() {
  const results: Record<
    string,
    { p50: number; p99: number; rps: number; maxRps: number; gc: ReturnType<typeof gcSummary> }
  > = {};
  for (const mode of ['reference', 'webhook'] as const) {
    const { child, port, output } = await startChild(['bench/webhook-server.ts', mode]);
    // One keep-alive agent for warm-up and measurement, as the apiserver keeps its
    // connections: the measured window holds no TLS handshakes.
    const agent = new Agent({ keepAlive: true, maxSockets: 32, rejectUnauthorized: false });
    try {
      await closedLoop(agent, port, 1); // warm-up: JIT, and all 32 sockets connected
      const traceFrom = output().length;
      const { latencies, achievedRps } = await openLoop(agent, port, TARGET_RPS, DIRECT_SECONDS);
      await new Promise((r) => setTimeout(r, 100)); // the last trace lines
      const gc = gcSummary(output().slice(traceFrom));
      const maxRps = await closedLoop(agent, port, 3);
      results[mode] = {
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        rps: achievedRps,
        maxRps,
        gc,
      };
      console.log(
        `direct ${mode.padEnd(9)} at ${round(achievedRps, 0)} req/s: ${JSON.stringify(summary(latencies))} ms; max ${round(maxRps, 0)} req/s; GC during the ${DIRECT_SECONDS} s: ${JSON.stringify(gc)}`,
      );
    } finally {
      agent.destroy();
      child.kill('SIGKILL');
    }
  }
  return results as Record<
    'reference' | 'webhook',
    { p50: number; p99: number; rps: number; maxRps: number; gc: ReturnType<typeof gcSummary> }
  >;
}

async function endToEnd() {
  const dir = await mkdtemp(join(tmpdir(), 'bench-webhook-'));
  const controlPlane = await startControlPlane({ dir: join(dir, 'cp') });
  let webhook: ReturnType<typeof spawnTandem> | undefined;
  try {
    const kc = loadKubeConfig(controlPlane.kubeconfigPath);
    await installCrds(kc, join(manifestsDir(), 'crds'));
    const port = await freePort();
    const registration = await registerWebhookConfigurations(kc, `https://127.0.0.1:${port}`, 'bench');
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'tandem-system' } } });
    await core.createNamespace({ body: { metadata: { name: 'bench' } } });
    webhook = spawnTandem([
      'webhook',
      `--listen=127.0.0.1:${port}`,
      `--kubeconfig=${controlPlane.kubeconfigPath}`,
      '--namespace=tandem-system',
      `--validating-configuration=${registration.names.validating}`,
      `--mutating-configuration=${registration.names.mutating}`,
      '--extra-ip-sans=127.0.0.1',
      '--log-level=warn',
    ]);
    webhook.stdout.pipe(process.stdout);
    webhook.stderr.pipe(process.stderr);
    await waitReady(port);
    await prepare(kc);

    const withWebhook: number[] = [];
    const without: number[] = [];
    const createPod = async (namespace: string, name: string) => {
      const started = performance.now();
      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name },
          spec: {
            containers: [{ name: 'c', image: 'busybox' }],
            volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'disk' } }],
          },
        },
      });
      return performance.now() - started;
    };
    for (let i = 0; i < 30; i++) {
      await createPod('bench', `warm-${i}`);
      await createPod('tandem-system', `warm-${i}`);
    }
    for (let i = 0; i < E2E_PODS; i++) {
      // Alternate which goes first, so neither side always follows the other.
      if (i % 2 === 0) {
        withWebhook.push(await createPod('bench', `pod-${i}`));
        without.push(await createPod('tandem-system', `pod-${i}`));
      } else {
        without.push(await createPod('tandem-system', `pod-${i}`));
        withWebhook.push(await createPod('bench', `pod-${i}`));
      }
    }
    console.log(`e2e pod create with webhook:    ${JSON.stringify(summary(withWebhook))} ms`);
    console.log(`e2e pod create without webhook: ${JSON.stringify(summary(without))} ms`);
    return { withWebhook, without };
  } finally {
    if (webhook && webhook.exitCode === null) {
      const exited = new Promise((r) => webhook?.once('exit', r));
      webhook.kill('SIGTERM');
      await exited; // before the apiserver goes, so its watches end quietly
    }
    await controlPlane.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A Tandem class and a plain claim in both namespaces: every pod passes the pod webhook's match condition. */
async function prepare(kc: KubeConfig) {
  const storage = kc.makeApiClient(StorageV1Api);
  await storage.createStorageClass({
    body: { metadata: { name: 'tandem' }, provisioner: 'csi.tandem.dev', parameters: {} },
  });
  const core = kc.makeApiClient(CoreV1Api);
  for (const namespace of ['bench', 'tandem-system']) {
    await core.createNamespacedPersistentVolumeClaim({
      namespace,
      body: {
        metadata: { name: 'disk' },
        spec: {
          storageClassName: 'tandem',
          accessModes: ['ReadWriteOnce'],
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
  }
}

async function waitReady(port: number) {
  const agent = new Agent({ rejectUnauthorized: false });
  for (let i = 0; i < 300; i++) {
    const status = await new Promise<number>((resolve) => {
      request({ host: '127.0.0.1', port, path: '/readyz', agent }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', () => resolve(0))
        .end();
    });
    if (status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('webhook not ready after 30 s');
}

export async function benchWebhook(): Promise<Record<string, unknown>> {
  const d = await direct();
  const e = await endToEnd();
  const withP50 = percentile(e.withWebhook, 50);
  const withP99 = percentile(e.withWebhook, 99);
  const withoutP50 = percentile(e.without, 50);
  const withoutP99 = percentile(e.without, 99);
  const result = {
    benchmark: 'webhook',
    direct_rps: round(d.webhook.maxRps, 0),
    direct_rate_rps: round(d.webhook.rps, 0),
    direct_p50_ms: round(d.webhook.p50),
    direct_p99_ms: round(d.webhook.p99),
    reference_rps: round(d.reference.maxRps, 0),
    reference_p50_ms: round(d.reference.p50),
    reference_p99_ms: round(d.reference.p99),
    direct_p99_ratio: round(d.webhook.p99 / d.reference.p99),
    direct_rps_ratio: round(d.webhook.maxRps / d.reference.maxRps),
    direct_gc_scavenges: d.webhook.gc.scavenges,
    direct_gc_mark_compacts: d.webhook.gc.markCompacts,
    direct_gc_pause_ms: d.webhook.gc.pauseMs,
    direct_gc_max_pause_ms: d.webhook.gc.maxPauseMs,
    reference_gc_pause_ms: d.reference.gc.pauseMs,
    e2e_pods: e.withWebhook.length,
    e2e_with_p50_ms: round(withP50),
    e2e_with_p99_ms: round(withP99),
    e2e_without_p50_ms: round(withoutP50),
    e2e_without_p99_ms: round(withoutP99),
    e2e_added_p50_ms: round(withP50 - withoutP50),
    e2e_added_p99_ms: round(withP99 - withoutP99),
    e2e_p99_ratio: round(withP99 / withoutP99),
    targets: { direct_p99_ms: 2, direct_p99_ratio: 1.5, e2e_added_p99_ms: 5 },
    met: {
      direct_p99_ms: d.webhook.p99 <= 2,
      direct_p99_ratio: d.webhook.p99 / d.reference.p99 <= 1.5,
      e2e_added_p99_ms: withP99 - withoutP99 <= 5,
    },
  };
  return result;
}
