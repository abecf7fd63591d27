/**
 * ReadWriteMany file volumes on real nodes: a claim of an NFS class is provisioned by
 * csi-provisioner, the leading controller starts its share manager as a Pod in tandem-system
 * (scheduled by kube-scheduler where the class allows, run by the kubelet from Tandem's image:
 * nbdfuse + loop over the engine, ext4, NFS-Ganesha), and clients reach it through its Service's
 * cluster IP and the node's kube-proxy rules. Then the share manager is SIGKILLed and replaced.
 *
 * What is played, and why: these machines have no kernel NFS client, so no pod can mount the
 * claim (the node plugin's mount step is unit-tested, driver/node/stage-nfs.test.ts). The clients
 * are Tandem's own NFSv4.1 client (lib/nfs4), each run as a process in one node's network
 * namespace (test/harness/nfs-probe.mts), which is where a kernel client's mount would connect from.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { claim, namespace } from '../../lab/workloads.js';
import { run } from '../../lib/exec.js';
import { packageRoot } from '../../lib/paths.js';
import { waitFor } from '../../lib/readiness.js';
import { startTandemCluster, type TandemCluster } from '../harness/real-cluster.js';
import { podProcesses } from '../harness/vm-checks.js';

const NS = 'rwx';
const CLASS = 'tandem-shared-e2e';
const XFS_CLASS = 'tandem-shared-xfs-e2e';
let env: TandemCluster;
let volume = '';
let server = '';

interface ProbeResult {
  ok: boolean;
  ms: number;
  data?: string;
  error?: string;
}

/** One NFS client step from inside node `node`'s network namespace. */
function probe(node: string, step: Record<string, unknown>): Promise<ProbeResult> {
  const realNode = env.cluster.nodes.find((n) => n.name === node);
  if (realNode === undefined) throw new Error(`no node ${node}`);
  return new Promise((resolve, reject) => {
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${realNode.node.netns}`,
        '--',
        process.execPath,
        '--import',
        'tsx',
        join(packageRoot(), 'test', 'harness', 'nfs-probe.mts'),
        JSON.stringify({ host: server, port: 2049, ...step }),
      ],
      { cwd: packageRoot(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.on('error', reject);
    child.on('exit', () => {
      clearTimeout(timer);
      const line = out.trim().split('\n').at(-1) ?? '';
      try {
        resolve(JSON.parse(line) as ProbeResult);
      } catch {
        reject(new Error(`nfs-probe printed no result: ${out} ${err}`));
      }
    });
  });
}

const shareManager = (vol = volume) => `share-manager-${vol}`;

async function shareManagerPod(
  vol = volume,
): Promise<{ uid: string; node: string; phase: string } | undefined> {
  const out = await env
    .kubectl(
      '-n',
      'tandem-system',
      'get',
      'pod',
      shareManager(vol),
      '-o',
      'jsonpath={.metadata.uid} {.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}',
    )
    .catch(() => '');
  const [uid, node, phase, deleting] = out.trim().split(' ');
  if (!uid || !node || deleting) return undefined;
  return { uid, node, phase: phase ?? '' };
}

async function servedBy(notUid?: string, vol = volume): Promise<{ uid: string; node: string }> {
  let found: { uid: string; node: string } | undefined;
  await waitFor(
    `the share manager of ${vol} serving${notUid ? ' (a new one)' : ''}`,
    async () => {
      const pod = await shareManagerPod(vol);
      if (pod === undefined || pod.phase !== 'Running' || pod.uid === notUid) return false;
      const ready = await env.kubectl(
        '-n',
        'tandem-system',
        'get',
        'endpointslice',
        shareManager(vol),
        '-o',
        'jsonpath={.endpoints[*].addresses[0]}',
      );
      if (ready.trim() === '') return false;
      found = pod;
      return true;
    },
    240_000,
  );
  return found as { uid: string; node: string };
}

/** The date file as a client new to the server reads it from node-1, once it can (grace, a move). */
async function dateReadBack(ownerId: string, when: string): Promise<string> {
  let read: ProbeResult | undefined;
  await waitFor(
    `the file read back ${when}`,
    async () => {
      read = await probe('node-1', { ownerId, op: 'read', path: '/date.txt', graceMs: 60_000 });
      return read.ok;
    },
    180_000,
  );
  return Buffer.from(read?.data ?? '', 'base64').toString();
}

beforeAll(async () => {
  env = await startTandemCluster(3);
  const sharedClass = (name: string, parameters: Record<string, string>) => ({
    apiVersion: 'storage.k8s.io/v1',
    kind: 'StorageClass',
    metadata: { name },
    provisioner: 'csi.tandem.dev',
    parameters: { numberOfReplicas: '2', fastFailover: 'true', ...parameters },
    allowVolumeExpansion: true,
    // node-1 never hosts the share manager; its clients are the other side of the Service.
    allowedTopologies: [
      { matchLabelExpressions: [{ key: 'topology.csi.tandem.dev/node', values: ['node-2', 'node-3'] }] },
    ],
    reclaimPolicy: 'Delete',
    volumeBindingMode: 'Immediate',
  });
  // ext4 for the failovers: xfs refuses to mount a filesystem whose UUID the kernel already has
  // mounted, and the lab's nodes share one kernel — a share manager cut off on its node still
  // holds its mount (its own kernel would, in a real cluster). xfs for the expansion: ext4 grows
  // online only with CAP_SYS_RESOURCE, which root lacks on these machines.
  await env.apply(namespace(NS), sharedClass(CLASS, {}), sharedClass(XFS_CLASS, { fsType: 'xfs' }));
  await env.apply(
    claim(NS, 'shared', { storageClass: CLASS, accessModes: ['ReadWriteMany'], size: '128Mi' }),
  );
  await waitFor(
    'the shared claim bound',
    async () =>
      (await env.kubectl('-n', NS, 'get', 'pvc', 'shared', '-o', 'jsonpath={.status.phase}')) === 'Bound',
    120_000,
  );
  volume = (await env.kubectl('-n', NS, 'get', 'pvc', 'shared', '-o', 'jsonpath={.spec.volumeName}')).trim();
}, 900_000);

afterAll(async () => {
  await env
    ?.kubectl(
      '-n',
      NS,
      'delete',
      'pvc',
      'shared',
      'grown',
      '--ignore-not-found',
      '--wait=true',
      '--timeout=120s',
    )
    .catch(() => '');
  const problems = (await env?.stop()) ?? [];
  expect(problems).toEqual([]);
}, 300_000);

describe('an RWX claim served over NFS on real nodes', () => {
  it('a share manager Pod serves it where the class allows; clients on two nodes share a date file through the Service', async () => {
    const first = await servedBy();
    expect(['node-2', 'node-3']).toContain(first.node);
    server = (
      await env.kubectl(
        '-n',
        'tandem-system',
        'get',
        'service',
        shareManager(),
        '-o',
        'jsonpath={.spec.clusterIP}',
      )
    ).trim();
    expect(server).not.toBe('');
    const date = `${new Date().toISOString()}\n`;
    const written = await probe('node-1', {
      ownerId: 'node-1-writer',
      op: 'write',
      path: '/date.txt',
      data: Buffer.from(date).toString('base64'),
      graceMs: 60_000,
    });
    expect(written).toMatchObject({ ok: true });
    const reader = first.node === 'node-2' ? 'node-3' : 'node-2';
    const read = await probe(reader, {
      ownerId: `${reader}-reader`,
      op: 'read',
      path: '/date.txt',
      graceMs: 60_000,
    });
    expect(read).toMatchObject({ ok: true });
    expect(Buffer.from(read.data ?? '', 'base64').toString()).toBe(date);
    // The controller records it on its next pass after the slice appears (Events are asynchronous).
    await waitFor(
      'ShareManagerStarted on the claim',
      async () => /ShareManagerStarted/.test((await env.events(NS, 'shared')).join('\n')),
      30_000,
    );
  }, 400_000);

  it('expanding a claim grows the filesystem under the running export (csi-resizer, no node expansion)', async () => {
    await env.apply(
      claim(NS, 'grown', { storageClass: XFS_CLASS, accessModes: ['ReadWriteMany'], size: '320Mi' }),
    );
    let grown = '';
    await waitFor(
      'the xfs claim bound',
      async () => {
        grown = (
          await env.kubectl('-n', NS, 'get', 'pvc', 'grown', '-o', 'jsonpath={.spec.volumeName}')
        ).trim();
        return grown !== '';
      },
      120_000,
    );
    const { node } = await servedBy(undefined, grown);
    const holder = env.cluster.nodes.find((n) => n.name === node)?.holderPid;
    if (holder === undefined) throw new Error(`no mount namespace for ${node}`);
    // The share manager mounts Bidirectional, so its filesystem shows in the node's namespace.
    const mount = `/var/lib/tandem/share-manager/${grown}/volume`;
    const sizeOf = async () => {
      const out = await run(
        'nsenter',
        [`--mount=/proc/${holder}/ns/mnt`, 'df', '-B1', '--output=size', mount],
        {
          timeoutMs: 10_000,
        },
      );
      return Number(out.stdout.trim().split('\n').at(-1));
    };
    expect(await sizeOf()).toBeLessThan(320 * 1024 * 1024);
    const patch = '{"spec":{"resources":{"requests":{"storage":"512Mi"}}}}';
    await env.kubectl('-n', NS, 'patch', 'pvc', 'grown', '--type=merge', '-p', patch);
    await waitFor(
      'the claim at its new size',
      async () =>
        (
          await env.kubectl('-n', NS, 'get', 'pvc', 'grown', '-o', 'jsonpath={.status.capacity.storage}')
        ).trim() === '512Mi',
      120_000,
    );
    // xfs keeps part of the device: a 512 MiB one shows 448 MiB.
    await waitFor('the exported filesystem grown', async () => (await sizeOf()) > 400 * 1024 * 1024, 120_000);
    await env.kubectl('-n', NS, 'delete', 'pvc', 'grown', '--wait=true', '--timeout=120s');
  }, 400_000);

  it('a SIGKILLed share manager is replaced; the file is read back through the same Service address', async () => {
    const before = await servedBy();
    const pids = await podProcesses(env, 'tandem-system', shareManager(), 'node');
    expect(pids.length).toBeGreaterThan(0);
    const killedAt = Date.now();
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    const after = await servedBy(before.uid);
    expect(['node-2', 'node-3']).toContain(after.node);
    const read = await dateReadBack('node-1-after', 'after the failover');
    console.log(
      `share manager failover: ${before.node} → ${after.node}, first successful read ${Date.now() - killedAt} ms after the kill`,
    );
    expect(read).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect((await env.events(NS, 'shared')).join('\n')).toMatch(/ShareManagerFailedOver/);
  }, 400_000);
  it("its node's link cut: a new share manager on the other allowed node, never on the lost one; the file read back", async () => {
    const before = await servedBy();
    const lost = env.cluster.nodes.find((n) => n.name === before.node);
    if (lost === undefined) throw new Error(`no node ${before.node}`);
    const cutAt = Date.now();
    await env.cluster.network.cutLink(lost.node);
    try {
      // The data plane's registration lapses (40 s), the controller deletes the Pod with force
      // and places the next one where the class allows, away from the lost node.
      const after = await servedBy(before.uid);
      expect(after.node).not.toBe(before.node);
      expect(['node-2', 'node-3']).toContain(after.node);
      const servedAt = Date.now();
      const read = await dateReadBack('node-1-after-cut', 'after the node was lost');
      console.log(
        `share manager on a cut node: ${before.node} → ${after.node} serving ${servedAt - cutAt} ms after the cut, first read ${Date.now() - cutAt} ms`,
      );
      expect(read).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect((await env.events(NS, 'shared')).join('\n')).toMatch(/ShareManagerFailedOver.*(lost|heartbeat)/);
    } finally {
      await env.cluster.network.restoreLink(lost.node);
    }
  }, 500_000);
});
