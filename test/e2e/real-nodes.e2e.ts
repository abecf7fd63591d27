/**
 * Tandem on real nodes: three kubelets with containerd, the controller-manager and the scheduler,
 * Tandem installed with `kubectl apply -k` from its own manifests and image. Every volume here is
 * attached by the attach-detach controller and csi-attacher, staged and published by the kubelet
 * through the node plugin that registered itself, and used by real pods; the test only does what
 * a user does (kubectl).
 */

import { claim, deployment, namespace, pod } from '../../lab/workloads.js';
import {
  APP_LABEL,
  CREATED_BY_LABEL,
  LAUNCHER_ROLE,
  MIGRATION_JOB_LABEL,
  VM_NAME_LABEL,
} from '../../lib/kubevirt/vocabulary.js';
import { startTandemCluster, type TandemCluster, tandemPods } from '../harness/real-cluster.js';

const NS = 'e2e';
let env: TandemCluster;

beforeAll(async () => {
  env = await startTandemCluster(3);
  await env.apply(namespace(NS));
}, 900_000);

afterAll(async () => {
  const problems = (await env?.stop()) ?? [];
  expect(problems).toEqual([]);
}, 300_000);

/** The single pod of a Deployment (label app=<name>), once Running. */
async function deploymentPod(name: string, notOn?: string): Promise<{ name: string; node: string }> {
  let found: { name: string; node: string } | undefined;
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline) {
    const out = await env.kubectl(
      '-n',
      NS,
      'get',
      'pods',
      '-l',
      `app=${name}`,
      '-o',
      'jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}{"\\n"}{end}',
    );
    const running = out
      .split('\n')
      .map((line) => line.trim().split(' '))
      .filter(([, node, phase, deleting]) => phase === 'Running' && !deleting && node !== notOn);
    if (running.length === 1 && running[0]) {
      found = { name: running[0][0] as string, node: running[0][1] as string };
      break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  if (!found) throw new Error(`no running pod of ${name}${notOn ? ` off ${notOn}` : ''}`);
  return found;
}

describe('Tandem on real nodes', () => {
  it('installs from its manifests: every node registers the plugin with its kubelet', async () => {
    const drivers = await env.kubectl(
      'get',
      'csinodes',
      '-o',
      'jsonpath={range .items[*]}{.metadata.name}={.spec.drivers[*].name}{"\\n"}{end}',
    );
    expect(drivers.trim().split('\n').sort()).toEqual([
      'node-1=csi.tandem.dev',
      'node-2=csi.tandem.dev',
      'node-3=csi.tandem.dev',
    ]);
    console.log(`cluster start-up ${JSON.stringify(env.cluster.timings)}, install ${env.installMs} ms`);
  });

  it('moves an RWO filesystem claim with its Deployment to another node, files intact', async () => {
    await env.apply(
      claim(NS, 'fs-claim'),
      deployment(NS, 'fs-app', {
        claim: 'fs-claim',
        script:
          // Writes its blob once: the pods that follow find it and only keep the volume in use.
          '[ -s /data/blob.sha256 ] || { head -c 4194304 /dev/urandom > /data/blob && sha256sum /data/blob > /data/blob.sha256 && sync; }; trap "exit 0" TERM; while true; do sleep 1; done',
      }),
    );
    const first = await deploymentPod('fs-app');
    await env.exec(NS, first.name, 'test -s /data/blob.sha256');
    const before = await env.exec(NS, first.name, 'cat /data/blob.sha256');
    await env.kubectl('cordon', first.node);
    try {
      await env.kubectl('-n', NS, 'delete', 'pod', first.name, '--wait=false');
      const second = await deploymentPod('fs-app', first.node);
      expect(second.node).not.toBe(first.node);
      // The blob read back on the new node hashes to what the first pod recorded.
      expect(await env.exec(NS, second.name, 'sha256sum /data/blob')).toBe(before);
    } finally {
      await env.kubectl('uncordon', first.node);
    }
  }, 400_000);

  it('expands a mounted filesystem online, seen inside the pod', async () => {
    // xfs, not the example class's ext4: root on these machines lacks CAP_SYS_RESOURCE, which
    // ext4's online resize ioctl needs (the driver answers FAILED_PRECONDITION saying so);
    // xfs_growfs needs only CAP_SYS_ADMIN. mkfs.xfs wants at least 300 MiB.
    await env.apply(
      {
        apiVersion: 'storage.k8s.io/v1',
        kind: 'StorageClass',
        metadata: { name: 'e2e-xfs' },
        provisioner: 'csi.tandem.dev',
        parameters: { numberOfReplicas: '2', fsType: 'xfs' },
        volumeBindingMode: 'WaitForFirstConsumer',
        allowVolumeExpansion: true,
      },
      claim(NS, 'grow-claim', { storageClass: 'e2e-xfs', size: '320Mi' }),
      pod(NS, 'grow-app', { claim: 'grow-claim' }),
    );
    await env.waitForPod(NS, 'grow-app');
    const sizeKiB = async () =>
      Number((await env.exec(NS, 'grow-app', "df -k /data | awk 'NR==2 {print $2}'")).trim());
    const before = await sizeKiB();
    await env.kubectl(
      '-n',
      NS,
      'patch',
      'pvc',
      'grow-claim',
      '--type=merge',
      '-p',
      '{"spec":{"resources":{"requests":{"storage":"512Mi"}}}}',
    );
    const deadline = Date.now() + 120_000;
    let after = before;
    while (Date.now() < deadline && after < 400 * 1024) {
      await new Promise((r) => setTimeout(r, 1_000));
      after = await sizeKiB();
    }
    expect(before).toBeLessThan(320 * 1024);
    expect(after).toBeGreaterThan(400 * 1024);
    await env.kubectl('-n', NS, 'delete', 'pod', 'grow-app', '--wait=true', '--timeout=120s');
  }, 300_000);

  it('serves a raw block claim to a pod', async () => {
    await env.apply(
      claim(NS, 'block-claim', { volumeMode: 'Block' }),
      pod(NS, 'block-app', { claim: 'block-claim', block: true }),
    );
    await env.waitForPod(NS, 'block-app');
    const out = await env.exec(
      NS,
      'block-app',
      'head -c 8388608 /dev/urandom > /tmp/x && dd if=/tmp/x of=/dev/tandem bs=1M oflag=direct conv=fsync status=none && dd if=/dev/tandem bs=1M count=8 iflag=direct status=none | cmp - /tmp/x && blockdev --getsize64 /dev/tandem',
    );
    expect(Number(out.trim())).toBe(64 * 1024 * 1024);
  }, 200_000);

  it('opens a migratable claim from two pods of one VM on two nodes, and refuses another VM (webhook and driver)', async () => {
    // KubeVirt's labels on virt-launcher pods; a migration's target pod also carries the job's UID.
    const launcher = (vm: string, uid: string, migrationJob?: string) => ({
      [APP_LABEL]: LAUNCHER_ROLE,
      [VM_NAME_LABEL]: vm,
      [CREATED_BY_LABEL]: uid,
      ...(migrationJob === undefined ? {} : { [MIGRATION_JOB_LABEL]: migrationJob }),
    });
    const migratable = {
      storageClass: 'tandem-migratable',
      accessModes: ['ReadWriteMany'],
      volumeMode: 'Block' as const,
    };
    try {
      await env.apply(
        claim(NS, 'vm-disk', migratable),
        pod(NS, 'launcher-a-source', {
          claim: 'vm-disk',
          block: true,
          node: 'node-1',
          labels: launcher('vm-a', 'uid-a'),
        }),
      );
      await env.waitForPod(NS, 'launcher-a-source');
      await env.apply(
        pod(NS, 'launcher-a-target', {
          claim: 'vm-disk',
          block: true,
          node: 'node-2',
          labels: launcher('vm-a', 'uid-a', 'migration-uid-a'),
        }),
      );
      await env.waitForPod(NS, 'launcher-a-target');
      // Both see the same disk: what the source writes, the target reads (direct I/O on both).
      await env.exec(
        NS,
        'launcher-a-source',
        'echo tandem-migratable | dd of=/dev/tandem bs=4096 conv=sync,fsync oflag=direct status=none',
      );
      expect(
        await env.exec(
          NS,
          'launcher-a-target',
          'dd if=/dev/tandem bs=4096 count=1 iflag=direct status=none | head -c 17',
        ),
      ).toBe('tandem-migratable');

      const refused = await env.cluster.kubectl(['apply', '-f', '-'], {
        input: JSON.stringify(
          pod(NS, 'launcher-b', {
            claim: 'vm-disk',
            block: true,
            node: 'node-3',
            labels: launcher('vm-b', 'uid-b'),
          }),
        ),
        allowFailure: true,
      });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(
        /pods\.validate\.tandem\.dev.*of VM .*vm-b.* may not use claim vm-disk/s,
      );

      // kube-system is outside the webhook's namespaces: there the driver alone must refuse.
      await env.apply(
        claim('kube-system', 'vm-disk', migratable),
        pod('kube-system', 'launcher-a', {
          claim: 'vm-disk',
          block: true,
          node: 'node-1',
          labels: launcher('vm-a', 'uid-a'),
        }),
      );
      await env.waitForPod('kube-system', 'launcher-a');
      await env.apply(
        pod('kube-system', 'launcher-b', {
          claim: 'vm-disk',
          block: true,
          node: 'node-2',
          labels: launcher('vm-b', 'uid-b'),
        }),
      );
      const deadline = Date.now() + 90_000;
      let events: string[] = [];
      while (Date.now() < deadline) {
        events = await env.events('kube-system', 'launcher-b');
        if (events.some((e) => /^Failed(Attach|Map|Mount)/.test(e) && /vm-b|VM/.test(e))) break;
        await new Promise((r) => setTimeout(r, 1_000));
      }
      expect(events.join('\n')).toMatch(/Failed(Attach|Map|Mount)Volume?.*VM/);
      expect(
        (
          await env.kubectl('-n', 'kube-system', 'get', 'pod', 'launcher-b', '-o', 'jsonpath={.status.phase}')
        ).trim(),
      ).toBe('Pending');
    } finally {
      // Also after a failure: the drain below refuses pods without a controller.
      await env.kubectl(
        '-n',
        'kube-system',
        'delete',
        'pod',
        'launcher-a',
        'launcher-b',
        '--ignore-not-found',
        '--wait=true',
        '--timeout=120s',
      );
      await env.kubectl(
        '-n',
        NS,
        'delete',
        'pod',
        'launcher-a-source',
        'launcher-a-target',
        'launcher-b',
        '--ignore-not-found',
        '--wait=true',
        '--timeout=120s',
      );
    }
  }, 400_000);

  it('drains a node with a volume in use: the pod moves with its data', async () => {
    const app = await deploymentPod('fs-app');
    const before = await env.exec(NS, app.name, 'sha256sum /data/blob');
    const drained = await env.cluster.kubectl(
      ['drain', app.node, '--ignore-daemonsets', '--delete-emptydir-data', '--timeout=180s'],
      { timeoutMs: 200_000, allowFailure: true },
    );
    try {
      expect(drained.stderr).not.toMatch(/error/i);
      expect(drained.code).toBe(0);
      const moved = await deploymentPod('fs-app', app.node);
      expect(await env.exec(NS, moved.name, 'sha256sum /data/blob')).toBe(before);
    } finally {
      await env.kubectl('uncordon', app.node);
    }
  }, 400_000);

  it('recreates the node plugin and the data plane under a writing pod, records what its I/O sees, and still stops the pod cleanly', async () => {
    // Appends a numbered 4 KiB block with O_DIRECT and fsync every 100 ms; counts failures.
    const writer =
      'i=0; errors=0; while true; do i=$((i+1)); if ! (printf "%08d" $i; head -c 4088 /dev/zero) | dd of=/data/log bs=4096 seek=$((i % 4096)) conv=notrunc,fsync oflag=direct status=none 2>>/tmp/err; then errors=$((errors+1)); fi; echo "$i $errors" > /tmp/progress; sleep 0.1; done';
    await env.apply(claim(NS, 'writer-claim'), pod(NS, 'writer', { claim: 'writer-claim', script: writer }));
    const facts = await env.waitForPod(NS, 'writer');
    const progress = async () => {
      const [writes = 0, errors = 0] = (await env.exec(NS, 'writer', 'cat /tmp/progress'))
        .trim()
        .split(' ')
        .map(Number);
      return { writes, errors };
    };
    const daemonPod = async (component: string) =>
      (await tandemPods(env, component, facts.node))[0]?.name ?? '';
    const restart = async (component: string) => {
      const old = await daemonPod(component);
      const start = await progress();
      await env.kubectl('-n', 'tandem-system', 'delete', 'pod', old, '--wait=true', '--timeout=120s');
      let current = old;
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline && (current === old || current === '')) {
        await new Promise((r) => setTimeout(r, 500));
        current = await daemonPod(component);
      }
      expect(current).not.toBe(old);
      await env.kubectl(
        '-n',
        'tandem-system',
        'wait',
        '--for=condition=Ready',
        `pod/${current}`,
        '--timeout=120s',
      );
      await new Promise((r) => setTimeout(r, 3_000));
      const end = await progress();
      return { writes: end.writes - start.writes, errors: end.errors - start.errors };
    };
    await new Promise((r) => setTimeout(r, 2_000));
    const before = await progress();
    expect(before.writes).toBeGreaterThan(10);
    expect(before.errors).toBe(0);
    // Recorded, not asserted (the issue asks what happens; the fault-campaign issue makes both
    // invisible): nbdfuse runs in the node plugin's container and dies with it, the engines in
    // the data-plane pod. docs/testing.md keeps the figures.
    const nodePlugin = await restart('node');
    const dataPlane = await restart('dataplane');
    console.log(
      `under a writing pod (4 KiB O_DIRECT+fsync every 100 ms): node-plugin restart ${JSON.stringify(nodePlugin)}, data-plane restart ${JSON.stringify(dataPlane)}`,
    );
    await env.kubectl(
      '-n',
      NS,
      'delete',
      'pod',
      'writer',
      '--wait=true',
      '--timeout=120s',
      '--grace-period=1',
    );
  }, 600_000);
});
