/**
 * Installs Tandem on a cluster of real nodes the way a user does: `kubectl apply -k` of the
 * lab's overlay (lab/overlay: manifests/ with the locally built image), then waits until every
 * component is rolled out and the webhook is registered with its certificate.
 */
import { join } from 'node:path';
import { packageRoot } from '../lib/paths.js';
import { waitFor } from '../lib/readiness.js';
import type { Cluster } from './cluster.js';

export const TANDEM_NAMESPACE = 'tandem-system';
export const LAB_OVERLAY = join(packageRoot(), 'lab', 'overlay');

const ROLLOUTS = [
  'daemonset/tandem-dataplane',
  'daemonset/tandem-node',
  'deployment/tandem-webhook',
  'deployment/tandem-controller',
  'deployment/tandem-migrator',
] as const;

export interface InstallResult {
  /** Milliseconds from `kubectl apply -k` to every component rolled out and the webhook serving. */
  ms: number;
}

export async function installTandem(cluster: Cluster, timeoutMs = 240_000): Promise<InstallResult> {
  const started = Date.now();
  await cluster.kubectl(['apply', '-k', LAB_OVERLAY], { timeoutMs: 60_000 });
  const remaining = () => Math.max(1_000, timeoutMs - (Date.now() - started));
  for (const rollout of ROLLOUTS) {
    if (rollout.startsWith('daemonset/')) {
      // `rollout status` refuses OnDelete DaemonSets (the data plane's): count ready pods instead.
      await waitFor(
        `${rollout} ready on every node`,
        async () => {
          const out = await cluster.kubectl([
            '-n',
            TANDEM_NAMESPACE,
            'get',
            rollout,
            '-o',
            'jsonpath={.status.desiredNumberScheduled} {.status.numberReady}',
          ]);
          const [desired = 0, ready = -1] = out.stdout.trim().split(' ').map(Number);
          return desired > 0 && ready === desired;
        },
        remaining(),
      ).catch(async (err: unknown) => {
        throw new Error(`${String(err)}\n${await podReport(cluster)}`);
      });
      continue;
    }
    const result = await cluster.kubectl(
      ['-n', TANDEM_NAMESPACE, 'rollout', 'status', rollout, `--timeout=${Math.ceil(remaining() / 1000)}s`],
      { timeoutMs: remaining() + 10_000, allowFailure: true },
    );
    if (result.code !== 0)
      throw new Error(`${rollout} did not roll out: ${result.stderr.trim()}\n${await podReport(cluster)}`);
  }
  // A node plugin that is Ready has not necessarily registered with its kubelet yet (the kubelet
  // notices the registration socket on its own schedule); until it has, the kubelet cannot stage
  // on that node. Every node's CSINode must list the driver.
  await waitFor(
    'the node plugin registered with every kubelet (CSINode)',
    async () => {
      const out = await cluster.kubectl([
        'get',
        'csinodes',
        '-o',
        'jsonpath={range .items[*]}{.metadata.name}={.spec.drivers[*].name}{"\\n"}{end}',
      ]);
      const registered = out.stdout.split('\n').filter((line) => /=.*\bcsi\.tandem\.dev\b/.test(line));
      return registered.length === cluster.nodes.length;
    },
    remaining(),
  ).catch(async (err: unknown) => {
    throw new Error(`${String(err)}\n${await podReport(cluster)}`);
  });
  // The webhook writes its CA into both configurations once it serves; until then the apiserver
  // cannot call it and claims (failurePolicy Fail) are refused.
  await waitFor(
    'the webhook configurations carry their CA bundle',
    async () => {
      const out = await cluster.kubectl([
        'get',
        'validatingwebhookconfiguration/tandem-validating',
        'mutatingwebhookconfiguration/tandem-mutating',
        '-o',
        'jsonpath={range .items[*]}{.webhooks[0].clientConfig.caBundle}{"\\n"}{end}',
      ]);
      const bundles = out.stdout.split('\n').filter((line) => line.trim() !== '');
      return bundles.length === 2;
    },
    remaining(),
  );
  return { ms: Date.now() - started };
}

/** What the pods of tandem-system are doing, for an error message a user can act on. */
export async function podReport(cluster: Cluster): Promise<string> {
  const pods = await cluster.kubectl(['-n', TANDEM_NAMESPACE, 'get', 'pods', '-o', 'wide'], {
    allowFailure: true,
  });
  const events = await cluster.kubectl(
    [
      '-n',
      TANDEM_NAMESPACE,
      'get',
      'events',
      '--sort-by=.lastTimestamp',
      '-o',
      'custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message',
    ],
    { allowFailure: true },
  );
  return `${pods.stdout}\n${events.stdout.split('\n').slice(-25).join('\n')}`;
}
