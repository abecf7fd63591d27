/**
 * What the lab runs on its real nodes once Tandem is installed: a Deployment writing to an RWO
 * filesystem claim and a pod with a raw block claim, both through the kubelet, the attach-detach
 * controller and Tandem's node plugin, as any user's workload would; and a VM (QEMU with the
 * built-in self-verifying guest) on a migratable claim on node-1, started by the lab's KubeVirt
 * stand-in, that `tandem lab-migrate` moves to another node and back.
 */
import type { Cluster } from './cluster.js';
import { podReport } from './install.js';
import { LabKubeVirt, type VmPlace } from './vm/kubevirt-stand-in.js';
import { claim, deployment, namespace, pod } from './workloads.js';

export const DEMO_NAMESPACE = 'demo';
export const DEMO_VM = 'demo-vm';

export interface Demo {
  namespace: string;
  /** The Deployment's pod and the block pod, with the nodes they run on. */
  pods: { name: string; node: string; what: string }[];
  /** Where the demo VM runs. */
  vm: VmPlace;
  ms: number;
}

const WRITER =
  'echo "written by $HOSTNAME on $NODE_NAME at $(date -u +%FT%TZ)" >> /data/hello.txt; sync; ' +
  'trap "exit 0" TERM; while true; do sleep 1; done';

export async function startDemo(cluster: Cluster, timeoutMs = 180_000): Promise<Demo> {
  const started = Date.now();
  const app = deployment(DEMO_NAMESPACE, 'demo-app', { claim: 'demo-fs', script: WRITER });
  const container = app.spec.template.spec.containers[0];
  if (container)
    Object.assign(container, {
      env: [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
    });
  const objects = [
    namespace(DEMO_NAMESPACE),
    claim(DEMO_NAMESPACE, 'demo-fs', { size: '256Mi' }),
    app,
    claim(DEMO_NAMESPACE, 'demo-block', { size: '256Mi', volumeMode: 'Block' }),
    pod(DEMO_NAMESPACE, 'demo-block', { claim: 'demo-block', block: true }),
    claim(DEMO_NAMESPACE, 'demo-vm-disk', {
      storageClass: 'tandem-migratable',
      accessModes: ['ReadWriteMany'],
      volumeMode: 'Block',
      size: '256Mi',
    }),
  ];
  const kubevirt = new LabKubeVirt(cluster);
  await kubevirt.installCrds();
  await cluster.kubectl(['apply', '-f', '-'], { input: objects.map((o) => JSON.stringify(o)).join('\n') });
  const wait = await cluster.kubectl(
    [
      '-n',
      DEMO_NAMESPACE,
      'wait',
      '--for=condition=Ready',
      'pod',
      '--all',
      `--timeout=${Math.ceil(timeoutMs / 1000)}s`,
    ],
    { timeoutMs: timeoutMs + 10_000, allowFailure: true },
  );
  if (wait.code !== 0) {
    const describe = await cluster.kubectl(['-n', DEMO_NAMESPACE, 'describe', 'pods'], {
      allowFailure: true,
    });
    throw new Error(
      `the demo pods did not start: ${wait.stderr.trim()}\n${describe.stdout.slice(-4000)}\n${await podReport(cluster)}`,
    );
  }
  const listed = await cluster.kubectl([
    '-n',
    DEMO_NAMESPACE,
    'get',
    'pods',
    '-o',
    'jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{"\\n"}{end}',
  ]);
  const vm = await kubevirt.startVm(
    {
      namespace: DEMO_NAMESPACE,
      name: DEMO_VM,
      claim: 'demo-vm-disk',
      node: cluster.nodes[0]?.name ?? 'node-1',
    },
    timeoutMs,
  );
  const pods = listed.stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [name = '', node = ''] = line.split(' ');
      return {
        name,
        node,
        what:
          name === 'demo-block'
            ? 'raw block claim demo-block at /dev/tandem'
            : 'claim demo-fs (ext4) at /data',
      };
    });
  return { namespace: DEMO_NAMESPACE, pods, vm, ms: Date.now() - started };
}

/** Deletes the demo with its claims, so the kubelet unpublishes and unstages them through Tandem. */
export async function stopDemo(cluster: Cluster, timeoutMs = 120_000): Promise<void> {
  await cluster.kubectl(
    ['delete', 'namespace', DEMO_NAMESPACE, '--wait=true', `--timeout=${Math.ceil(timeoutMs / 1000)}s`],
    {
      timeoutMs: timeoutMs + 10_000,
    },
  );
}
