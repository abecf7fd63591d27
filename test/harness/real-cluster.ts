/**
 * Tandem installed on a cluster of real nodes (the lab, lab/lab.ts, without its demo), with the few
 * verbs the end-to-end tests need: apply objects, wait for pods, exec into them, read events.
 * Everything goes through kubectl, as a user's checks would.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cluster } from '../../lab/cluster.js';
import { podReport } from '../../lab/install.js';
import { startLab } from '../../lab/lab.js';
import { createLogger } from '../../lib/log.js';
import { waitFor } from '../../lib/readiness.js';

export interface TandemCluster {
  cluster: Cluster;
  installMs: number;
  /** `kubectl apply -f -` of these objects. */
  apply(...objects: object[]): Promise<void>;
  /** kubectl's stdout; throws with stderr on failure. */
  kubectl(...args: string[]): Promise<string>;
  exec(namespace: string, pod: string, script: string, timeoutMs?: number): Promise<string>;
  waitForPod(
    namespace: string,
    pod: string,
    phase?: 'Running' | 'Succeeded',
    timeoutMs?: number,
  ): Promise<PodFacts>;
  /** Reasons and messages of the events about one object. */
  events(namespace: string, name: string): Promise<string[]>;
  stop(): Promise<string[]>;
}

export interface PodFacts {
  node: string;
  phase: string;
  uid: string;
}

export async function startTandemCluster(nodes = 3): Promise<TandemCluster> {
  const stateDir = await mkdtemp(join(tmpdir(), 'tandem-e2e-'));
  const logger = createLogger('e2e', process.env.TANDEM_TEST_LOG_LEVEL === 'debug' ? 'debug' : 'warn');
  // The lab without its demo: the same start-up, install and teardown a user gets from `make lab`.
  const lab = await startLab({ nodes, stateDir, demo: false, logger }).catch(async (err: unknown) => {
    await rm(stateDir, { recursive: true, force: true });
    throw err;
  });
  const { cluster } = lab;
  const kubectl = async (...args: string[]) => (await cluster.kubectl(args, { timeoutMs: 120_000 })).stdout;
  const podFacts = async (namespace: string, pod: string): Promise<PodFacts | undefined> => {
    const out = await cluster.kubectl(
      ['-n', namespace, 'get', 'pod', pod, '-o', 'jsonpath={.spec.nodeName} {.status.phase} {.metadata.uid}'],
      { allowFailure: true },
    );
    if (out.code !== 0) return undefined;
    const [node = '', phase = '', uid = ''] = out.stdout.trim().split(' ');
    return { node, phase, uid };
  };
  return {
    cluster,
    installMs: lab.installMs,
    apply: async (...objects) => {
      await cluster.kubectl(['apply', '-f', '-'], {
        input: objects.map((o) => JSON.stringify(o)).join('\n'),
        timeoutMs: 60_000,
      });
    },
    kubectl,
    exec: async (namespace, pod, script, timeoutMs = 60_000) =>
      (await cluster.kubectl(['-n', namespace, 'exec', pod, '--', 'sh', '-c', script], { timeoutMs })).stdout,
    waitForPod: async (namespace, pod, phase = 'Running', timeoutMs = 120_000) => {
      let facts: PodFacts | undefined;
      await waitFor(
        `pod ${namespace}/${pod} ${phase}`,
        async () => {
          facts = await podFacts(namespace, pod);
          if (facts?.phase === 'Failed' && phase !== 'Succeeded') throw new Error(`pod ${pod} failed`);
          return facts?.phase === phase;
        },
        timeoutMs,
      ).catch(async (err: unknown) => {
        const describe = await cluster.kubectl(['-n', namespace, 'describe', 'pod', pod], {
          allowFailure: true,
        });
        throw new Error(
          `${String(err)}\n${describe.stdout.split('\n').slice(-30).join('\n')}\n${await podReport(cluster)}`,
        );
      });
      return facts as PodFacts;
    },
    events: async (namespace, name) => {
      const out = await cluster.kubectl(
        [
          '-n',
          namespace,
          'get',
          'events',
          `--field-selector=involvedObject.name=${name}`,
          '-o',
          'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}',
        ],
        { allowFailure: true },
      );
      return out.stdout.split('\n').filter((line) => line.trim() !== '');
    },
    stop: () => lab.stop(),
  };
}

/** Tandem's pods of one component (label app.kubernetes.io/component), on one node when given. */
export async function tandemPods(
  env: Pick<TandemCluster, 'kubectl'>,
  component: string,
  node?: string,
): Promise<{ name: string; ip: string }[]> {
  const out = await env.kubectl(
    '-n',
    'tandem-system',
    'get',
    'pods',
    '-l',
    `app.kubernetes.io/component=${component}`,
    ...(node === undefined ? [] : ['--field-selector', `spec.nodeName=${node}`]),
    '-o',
    'jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{"\\n"}{end}',
  );
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [name = '', ip = ''] = line.trim().split(' ');
      return { name, ip };
    });
}
