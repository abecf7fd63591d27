/**
 * A real VM live-migrating on Tandem: QEMU (software emulation) in launcher pods on real nodes,
 * on the raw block device the kubelet published, with cache=none as virt-launcher opens it. The
 * lab's KubeVirt stand-in (lab/vm/kubevirt-stand-in.ts) plays virt-controller and virt-handler,
 * which cannot run here, in KubeVirt's order; everything storage does is the real thing (the
 * attach-detach controller, csi-attacher, the kubelet's stage and publish, the migrator). The
 * guest writes sequence-numbered, checksummed blocks with O_DIRECT throughout and verifies all of
 * them every two seconds against what its memory — which the migration moves — says it wrote.
 */
import { type GuestReport, guestReport } from '../../lab/vm/guest-console.js';
import { LabKubeVirt, type MigrationOutcome, type VmPlace } from '../../lab/vm/kubevirt-stand-in.js';
import { volumeOfClaim } from '../../lab/volumes.js';
import { claim, namespace, pod } from '../../lab/workloads.js';
import {
  APP_LABEL,
  CREATED_BY_LABEL,
  LAUNCHER_ROLE,
  MIGRATION_JOB_LABEL,
  VM_NAME_LABEL,
} from '../../lib/kubevirt/vocabulary.js';
import { waitFor } from '../../lib/readiness.js';
import { startTandemCluster, type TandemCluster, tandemPods } from '../harness/real-cluster.js';
import {
  compareReplicas,
  dataPlaneWarnings,
  migrationsTotal,
  podLoopDevice,
  podProcesses,
  readVolume,
  replicaFiles,
  waitForMigrationEnd,
} from '../harness/vm-checks.js';

const NS = 'vms';
const VM = 'guest';
let env: TandemCluster;
let kubevirt: LabKubeVirt;
let volume: string;
/** Every launcher pod's console so far, by pod (the guest's output moves with it). */
const consoles = new Map<string, string>();

beforeAll(async () => {
  env = await startTandemCluster(3);
  kubevirt = new LabKubeVirt(env.cluster);
  await kubevirt.installCrds();
  await env.apply(namespace(NS), claim(NS, 'guest-disk', migratableBlock));
}, 900_000);

afterAll(async () => {
  await kubevirt?.deleteVm(NS, VM).catch(() => undefined);
  const problems = (await env?.stop()) ?? [];
  expect(problems).toEqual([]);
}, 300_000);

const migratableBlock = {
  storageClass: 'tandem-migratable',
  accessModes: ['ReadWriteMany'],
  volumeMode: 'Block' as const,
  size: '256Mi',
};

async function console_(place: Pick<VmPlace, 'namespace' | 'pod'>): Promise<GuestReport> {
  const log = await kubevirt.consoleLog(place);
  if (log !== '') consoles.set(place.pod, log);
  return guestReport(consoles.get(place.pod) ?? '');
}

/** Waits for `passes` more verify passes on the pod's console than it had, all ok; returns the report. */
async function verifiedAgain(place: VmPlace, after: number, passes = 2): Promise<GuestReport> {
  let report = await console_(place);
  await waitFor(
    `${passes} verify passes of the guest on ${place.pod} after pass ${after}`,
    async () => {
      report = await console_(place);
      if (report.verifies.some((v) => !v.ok)) return true;
      return report.verifies.filter((v) => v.pass > after).length >= passes;
    },
    120_000,
  );
  const failed = report.verifies.find((v) => !v.ok);
  const ioErrors = report.ioErrors.map((e) => e.fields);
  if (failed !== undefined || report.ioErrorCount > 0) {
    // The io-error lines of errors seen before a migration are on earlier pods' consoles.
    for (const pod of [...consoles.keys()].filter((p) => p !== place.pod)) {
      const log = await kubevirt
        .consoleLog({ namespace: place.namespace, pod })
        .catch(() => consoles.get(pod) ?? '');
      for (const e of guestReport(log).ioErrors) ioErrors.push({ pod, ...e.fields });
    }
    console.log(
      `the guest on ${place.pod} saw a problem; the data planes logged:\n${(await dataPlaneWarnings(env)).join('\n')}`,
    );
  }
  // All at once: an I/O error the guest saw explains a block that holds a newer write than it knows of.
  expect({ failed, ioErrorCount: report.ioErrorCount, ioErrors }).toEqual({
    failed: undefined,
    ioErrorCount: 0,
    ioErrors: [],
  });
  expect(report.fatal).toBeUndefined();
  return report;
}

const lastPass = (report: GuestReport) => report.verifies.at(-1)?.pass ?? 0;

/** Pauses the guest (QEMU drains its I/O), compares the replicas on disk, resumes it. */
async function expectReplicasIdentical(place: VmPlace) {
  await kubevirt.qmp(place, 'stop');
  try {
    const files = await replicaFiles(env, volume);
    expect(files.length).toBe(3);
    expect(await compareReplicas(files.map((f) => f.file))).toEqual([]);
  } finally {
    await kubevirt.qmp(place, 'cont');
  }
}

function logOutcome(what: string, outcome: MigrationOutcome) {
  console.log(
    `${what}: ${outcome.source.node} → ${outcome.target.node} ${outcome.succeeded ? 'completed' : `failed (${outcome.failure})`}, ` +
      `downtime ${outcome.downtimeMs ?? '-'} ms, total ${outcome.totalMs ?? '-'} ms, target pod running after ${outcome.targetPodMs} ms`,
  );
}

describe('a QEMU VM on a migratable Tandem volume', () => {
  let place: VmPlace;

  it('boots on node-1 from the raw block device and verifies its own writes', async () => {
    place = await kubevirt.startVm({
      namespace: NS,
      name: VM,
      claim: 'guest-disk',
      node: 'node-1',
      guest: { verifyEveryMs: 2_000 },
    });
    volume = await volumeOfClaim(env.cluster, NS, 'guest-disk');
    const report = await verifiedAgain(place, 0, 1);
    expect(report.ready).toBe(true);
    // The kernel really runs the loop device under the published device with direct I/O.
    expect(await podLoopDevice(env, NS, place.pod, '/dev/vm-disk')).toMatchObject({ dio: true });
  }, 300_000);

  it('live-migrates to node-2 while writing: confirmed, one engine left, the source fenced, replicas identical', async () => {
    const before = await readVolume(env, volume);
    const confirmedBefore = await migrationsTotal(env, 'confirmed');
    const passBefore = lastPass(await console_(place));
    const outcome = await kubevirt.migrate(NS, VM, 'node-2', {
      beforeMigrate: async (target) => {
        // Cache coherence, proven: the target node reads the device through its page cache now
        // (blkid, and a buffered read of what the guest has written so far), while QEMU holds it
        // open; after the switch the guest reads back, with O_DIRECT, what the source wrote since.
        await env.exec(
          NS,
          target.pod,
          'blkid -p /dev/vm-disk; dd if=/dev/vm-disk of=/dev/null bs=64k count=256 status=none',
        );
        expect(await podLoopDevice(env, NS, target.pod, '/dev/vm-disk')).toMatchObject({ dio: true });
      },
    });
    logOutcome('confirm', outcome);
    expect(outcome.succeeded).toBe(true);
    place = outcome.now;
    expect(place.node).toBe('node-2');
    // The guest's console continues on the target; its next passes read everything back.
    await verifiedAgain(place, passBefore);
    const after = await waitForMigrationEnd(
      env,
      volume,
      'Confirmed',
      before.status?.lastMigration?.startedAt,
    );
    expect(after.status?.engines?.map((e) => e.node)).toEqual(['node-2']);
    expect(after.status?.epoch ?? 0).toBeGreaterThan(before.status?.epoch ?? 0);
    await waitFor(
      'the confirmed migration counted',
      async () => (await migrationsTotal(env, 'confirmed')) > confirmedBefore,
      30_000,
    );
    await expectReplicasIdentical(place);
    // The source's launcher ended Succeeded, and the kubelet's unstage there succeeded.
    expect(
      (
        await env.kubectl('-n', NS, 'get', 'pod', outcome.source.pod, '-o', 'jsonpath={.status.phase}')
      ).trim(),
    ).toBe('Succeeded');
  }, 400_000);

  it('migrates back to node-1 with the workload running throughout', async () => {
    const before = await readVolume(env, volume);
    const passBefore = lastPass(await console_(place));
    const seqBefore = (await console_(place)).lastSeq;
    const outcome = await kubevirt.migrate(NS, VM, 'node-1');
    logOutcome('back', outcome);
    expect(outcome.succeeded).toBe(true);
    place = outcome.now;
    expect(place.node).toBe('node-1');
    const report = await verifiedAgain(place, passBefore);
    // The same run of the workload, continued: its sequence numbers go on from where they were.
    expect(report.lastSeq).toBeGreaterThan(seqBefore);
    const after = await waitForMigrationEnd(
      env,
      volume,
      'Confirmed',
      before.status?.lastMigration?.startedAt,
    );
    expect(after.status?.engines?.map((e) => e.node)).toEqual(['node-1']);
  }, 400_000);

  it('rolls back when the target QEMU is killed mid-migration: the guest keeps running on the source', async () => {
    const before = await readVolume(env, volume);
    const rolledBackBefore = await migrationsTotal(env, 'rolled_back');
    const passBefore = lastPass(await console_(place));
    let killed = false;
    const outcome = await kubevirt.migrate(NS, VM, 'node-3', {
      // Slow enough to be caught in the middle: 128 MiB of guest memory at 4 MiB/s.
      maxBandwidth: 4 * 1024 * 1024,
      onProgress: async (info, target) => {
        if (killed || (info.ram?.transferred ?? 0) < 8 * 1024 * 1024) return;
        const pids = await podProcesses(env, NS, target.pod, 'qemu-system-x86_64');
        expect(pids.length).toBe(1);
        for (const pid of pids) process.kill(pid, 'SIGKILL');
        killed = true;
      },
    });
    logOutcome('rollback', outcome);
    expect(killed).toBe(true);
    expect(outcome.succeeded).toBe(false);
    expect(outcome.now.pod).toBe(place.pod);
    await verifiedAgain(place, passBefore);
    const after = await waitForMigrationEnd(
      env,
      volume,
      'RolledBack',
      before.status?.lastMigration?.startedAt,
    );
    expect(after.status?.engines?.map((e) => e.node)).toEqual(['node-1']);
    expect(after.status?.epoch ?? 0).toBeGreaterThan(before.status?.epoch ?? 0);
    await waitFor(
      'the rolled-back migration counted',
      async () => (await migrationsTotal(env, 'rolled_back')) > rolledBackBefore,
      30_000,
    );
    await expectReplicasIdentical(place);
  }, 400_000);

  it('completes a migration during which a replica server is SIGKILLed, and rebuilds the replica', async () => {
    const before = await readVolume(env, volume);
    const passBefore = lastPass(await console_(place));
    // node-3 runs neither engine: killing its data plane kills only that replica's server.
    const [dataplane] = await tandemPods(env, 'dataplane', 'node-3');
    expect(dataplane).toBeDefined();
    let killed = false;
    const outcome = await kubevirt.migrate(NS, VM, 'node-2', {
      maxBandwidth: 8 * 1024 * 1024,
      onProgress: async (info) => {
        if (killed || (info.ram?.transferred ?? 0) < 8 * 1024 * 1024) return;
        const pids = await podProcesses(env, 'tandem-system', dataplane?.name ?? '', 'node');
        expect(pids.length).toBeGreaterThan(0);
        for (const pid of pids) process.kill(pid, 'SIGKILL');
        killed = true;
      },
    });
    logOutcome('replica killed', outcome);
    expect(killed).toBe(true);
    expect(outcome.succeeded).toBe(true);
    place = outcome.now;
    await verifiedAgain(place, passBefore);
    await waitForMigrationEnd(env, volume, 'Confirmed', before.status?.lastMigration?.startedAt);
    await waitFor(
      'all three replicas healthy again',
      async () => (await readVolume(env, volume)).status?.healthyReplicas === 3,
      180_000,
    );
    await expectReplicasIdentical(place);
  }, 500_000);
});

describe('page caches on two nodes', () => {
  it('a buffered reader held open on one node reads stale data after the other writes; O_DIRECT does not', async () => {
    // Two launcher-like pods of one VMI, which exists, as it would with KubeVirt (the migrator reads it).
    const vmi = JSON.parse(
      (
        await env.cluster.kubectl(['create', '-f', '-', '-o', 'json'], {
          input: JSON.stringify({
            apiVersion: 'kubevirt.io/v1',
            kind: 'VirtualMachineInstance',
            metadata: { name: 'coherence', namespace: NS },
            spec: {
              domain: { devices: {} },
              volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: 'coherence-disk' } }],
            },
          }),
        })
      ).stdout,
    ) as { metadata: { uid: string } };
    await env.kubectl(
      '-n',
      NS,
      'patch',
      'virtualmachineinstances.kubevirt.io',
      'coherence',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { phase: 'Running', nodeName: 'node-1' } }),
    );
    const labels = {
      [APP_LABEL]: LAUNCHER_ROLE,
      [VM_NAME_LABEL]: 'coherence',
      [CREATED_BY_LABEL]: vmi.metadata.uid,
    };
    // The reader on node-2 holds the device open for its whole life, as QEMU does: the page cache
    // of a block device lives as long as one opener keeps it open.
    const holdOpen = 'exec 3</dev/tandem; trap "exit 0" TERM; while true; do sleep 1; done';
    await env.apply(
      claim(NS, 'coherence-disk', { ...migratableBlock, size: '64Mi' }),
      pod(NS, 'reader-node-1', { claim: 'coherence-disk', block: true, node: 'node-1', labels }),
    );
    await env.waitForPod(NS, 'reader-node-1');
    await env.apply(
      // The second pod is a migration's target, and carries the migration job's label as one does.
      pod(NS, 'reader-node-2', {
        claim: 'coherence-disk',
        block: true,
        node: 'node-2',
        labels: { ...labels, [MIGRATION_JOB_LABEL]: 'migration-coherence' },
        script: holdOpen,
      }),
    );
    await env.waitForPod(NS, 'reader-node-2');
    const block0 = (text: string) =>
      `printf '%-4096s' ${text} | dd of=/dev/tandem bs=4096 count=1 oflag=direct conv=fsync status=none`;
    const read = (flags: string) => `dd if=/dev/tandem bs=4096 count=1 ${flags} status=none | head -c 5`;
    await env.exec(NS, 'reader-node-1', block0('first'));
    // node-2 reads it through its page cache.
    expect(await env.exec(NS, 'reader-node-2', read(''))).toBe('first');
    await env.exec(NS, 'reader-node-1', block0('again'));
    // The page cache still has the old block: what cache=writeback/writethrough would return.
    expect(await env.exec(NS, 'reader-node-2', read(''))).toBe('first');
    // O_DIRECT (cache=none) reads what the other node wrote.
    expect(await env.exec(NS, 'reader-node-2', read('iflag=direct'))).toBe('again');
    await env.kubectl(
      '-n',
      NS,
      'delete',
      'pod',
      'reader-node-1',
      'reader-node-2',
      '--wait=true',
      '--timeout=120s',
    );
  }, 300_000);

  it('the webhook refuses a VMI with a writeback disk on a migratable claim, saying why', async () => {
    const vmi = {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachineInstance',
      metadata: { name: 'unsafe-cache', namespace: NS },
      spec: {
        domain: { devices: { disks: [{ name: 'disk', disk: { bus: 'virtio' }, cache: 'writeback' }] } },
        volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: 'guest-disk' } }],
      },
    };
    const refused = await env.cluster.kubectl(['create', '-f', '-'], {
      input: JSON.stringify(vmi),
      allowFailure: true,
    });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/disk disk \(claim guest-disk\) has cache writeback.*stale data/s);
  }, 60_000);
});
