/**
 * `npm run bench -- pods`: how long a pod with a Tandem claim takes to start on real nodes,
 * against the same pod with an emptyDir in the same run. Each sample is measured alone: claim
 * and pod created → pod Ready (the kubelet has staged and published the volume and started the
 * container). Target: pod_ready_ratio (p50 with a claim / p50 with emptyDir) ≤ 3.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { startLab } from '../lab/lab.js';
import { claim, namespace, pod } from '../lab/workloads.js';
import { loadKubeConfig } from '../lib/kube/client.js';
import { createLogger } from '../lib/log.js';
import { waitFor } from '../lib/readiness.js';
import { round, summary } from './stats.js';

const SAMPLES = Number(process.env.TANDEM_BENCH_PODS ?? 20);
const NS = 'bench-pods';

export async function benchPods(): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-bench-pods-'));
  const lab = await startLab({
    nodes: 3,
    stateDir: join(dir, 'lab'),
    demo: false,
    logger: createLogger('bench', 'warn'),
  });
  try {
    const core = loadKubeConfig(lab.kubeconfigPath).makeApiClient(CoreV1Api);
    await core.createNamespace({ body: namespace(NS) });
    await waitForServiceAccount(core);
    const withClaim: number[] = [];
    const withEmptyDir: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      // Alternating keeps slow drift (caches warming, the apiserver's load) out of the ratio.
      withEmptyDir.push(await timePod(core, `empty-${i}`, false));
      withClaim.push(await timePod(core, `claim-${i}`, true));
      // Untimed: each sample starts on an empty cluster, and the teardown finds nothing staged.
      await removeSample(core, `empty-${i}`, false);
      await removeSample(core, `claim-${i}`, true);
      process.stderr.write(
        `pods: sample ${i + 1}/${SAMPLES}: claim ${withClaim[i]} ms, emptyDir ${withEmptyDir[i]} ms\n`,
      );
    }
    const claimStats = summary(withClaim);
    const emptyStats = summary(withEmptyDir);
    return {
      benchmark: 'pods',
      samples: SAMPLES,
      claim_ready_ms: claimStats,
      emptydir_ready_ms: emptyStats,
      pod_ready_ratio: round(claimStats.p50 / emptyStats.p50, 2),
      pod_ready_ratio_p99: round(claimStats.p99 / emptyStats.p99, 2),
      target_pod_ready_ratio: 3,
      cluster_start_ms: lab.cluster.timings,
      install_ms: lab.installMs,
    };
  } finally {
    const problems = await lab.stop();
    if (problems.length > 0) process.stderr.write(`pods: teardown problems: ${problems.join('; ')}\n`);
    await rm(dir, { recursive: true, force: true });
  }
}

async function timePod(core: CoreV1Api, name: string, useClaim: boolean): Promise<number> {
  const started = Date.now();
  let body: V1Pod;
  if (useClaim) {
    await core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: claim(NS, name) });
    body = pod(NS, name, { claim: name }) as V1Pod;
  } else {
    body = pod(NS, name, { claim: 'unused' }) as V1Pod;
    body.spec = {
      ...body.spec,
      containers: body.spec?.containers ?? [],
      volumes: [{ name: 'disk', emptyDir: {} }],
    };
  }
  await core.createNamespacedPod({ namespace: NS, body });
  const deadline = started + 180_000;
  while (Date.now() < deadline) {
    const current = await core.readNamespacedPod({ name, namespace: NS });
    if (current.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
      return Date.now() - started;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`pod ${name} not Ready within 180 s`);
}

async function removeSample(core: CoreV1Api, name: string, useClaim: boolean): Promise<void> {
  await core.deleteNamespacedPod({ name, namespace: NS, gracePeriodSeconds: 1 });
  await waitFor(
    `pod ${name} deleted`,
    () =>
      core.readNamespacedPod({ name, namespace: NS }).then(
        () => false,
        () => true,
      ),
    120_000,
  );
  if (useClaim) await core.deleteNamespacedPersistentVolumeClaim({ name, namespace: NS });
}

/** The controller-manager creates the namespace's default ServiceAccount; pods wait for it. */
async function waitForServiceAccount(core: CoreV1Api): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const list = await core.listNamespacedServiceAccount({ namespace: NS });
    if (list.items.some((sa) => sa.metadata?.name === 'default')) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no default ServiceAccount in the benchmark namespace');
}
