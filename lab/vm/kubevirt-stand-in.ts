/**
 * The lab's stand-in for KubeVirt's controllers (virt-controller and virt-handler; KubeVirt's Go
 * modules are not served here, so KubeVirt itself cannot run): it starts VMs in launcher pods
 * (lab/vm/launcher.ts) with real QEMU and live-migrates them between real nodes. What it writes
 * follows KubeVirt's source (pkg/virt-controller/watch/migration/migration.go, the VMI controller,
 * pkg/virt-handler's migration source and target), in KubeVirt's order:
 *
 *  1. a VirtualMachineInstanceMigration (VMIM) names the VMI; phase Pending;
 *  2. virt-controller creates the target launcher pod (labels `kubevirt.io/created-by`, the VM name
 *     and `kubevirt.io/migrationJobUID`) on the target node; phase Scheduling. The kubelet then
 *     attaches the volume there (attach-detach controller → external-attacher →
 *     ControllerPublishVolume) and stages and publishes it before the pod runs;
 *  3. the pod runs: Scheduled, and the VMI's `status.migrationState` names source and target;
 *  4. virt-handler on the target prepares the domain (QEMU started with `-incoming`): PreparingTarget,
 *     then TargetReady once QEMU waits for the stream (`query-status` → inmigrate);
 *  5. virt-handler on the source starts the migration (QMP `migrate`, pre-copy), Running, and
 *     polls it (`query-migrate`);
 *  6. completed: the source is paused and flushed, the target resumed; migrationState completed,
 *     the VMI's nodeName becomes the target, the VMIM Succeeded; the source QEMU exits and its pod
 *     ends Succeeded. Failed: migrationState completed and failed, the VMIM Failed, the target pod
 *     deleted, the guest still running on the source.
 *
 * It keeps no state of its own: every call reads the VMI and pods from the cluster and opens QMP
 * for as long as it needs it, so the lab process and a `tandem lab vm` command can take turns.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { installCrds } from '../../lib/kube/manifests.js';
import {
  CREATED_BY_LABEL,
  KUBEVIRT_GROUP,
  KUBEVIRT_VERSION,
  type MigrationPhase,
  type MigrationState,
} from '../../lib/kubevirt/vocabulary.js';
import { packageRoot } from '../../lib/paths.js';
import { waitFor } from '../../lib/readiness.js';
import type { Cluster } from '../cluster.js';
import {
  type CacheMode,
  type GuestOptions,
  type LauncherPodJson,
  launcherPod,
  MIGRATION_PORT,
  migrationTargetPod,
  QMP_PORT,
} from './launcher.js';
import { type MigrationInfo, QmpClient } from './qmp.js';

/** What the stand-in needs of a cluster: its kubeconfig (for CRDs) and kubectl. */
export type Kubectl = Pick<Cluster, 'kubeconfigPath' | 'kubectl'>;

export interface VmSpec {
  namespace: string;
  name: string;
  claim: string;
  node: string;
  cacheMode?: CacheMode;
  memoryMiB?: number;
  guest?: GuestOptions;
}

/** Where a VM runs now. */
export interface VmPlace {
  namespace: string;
  vm: string;
  vmiUid: string;
  pod: string;
  node: string;
  podIp: string;
}

export interface MigrateOptions {
  /** QEMU's max-bandwidth in bytes/s (default: unlimited); slows a migration down for tests. */
  maxBandwidth?: number;
  /** QEMU's downtime-limit in ms (KubeVirt leaves QEMU's 300 ms default). */
  downtimeLimitMs?: number;
  /** Called once the target waits for the stream, before `migrate` (probes of the target's disk). */
  beforeMigrate?(target: VmPlace): Promise<void>;
  /** Called on every `query-migrate` while the migration runs (kill the target mid-migration). */
  onProgress?(info: MigrationInfo, target: VmPlace): Promise<void>;
  timeoutMs?: number;
}

export interface MigrationOutcome {
  vmim: string;
  succeeded: boolean;
  source: VmPlace;
  target: VmPlace;
  /** Where the guest runs afterwards. */
  now: VmPlace;
  /** QEMU's figures (completed migrations). */
  downtimeMs?: number;
  totalMs?: number;
  failure?: string;
  /** Milliseconds from creating the VMIM until the target pod ran (attach, stage, publish included). */
  targetPodMs: number;
}

interface PodJson {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string };
}

const VMI = `virtualmachineinstances.${KUBEVIRT_GROUP}`;
const VMIM = `virtualmachineinstancemigrations.${KUBEVIRT_GROUP}`;

export class LabKubeVirt {
  constructor(readonly cluster: Kubectl) {}

  /** KubeVirt's CRDs (the stand-ins in lab/kubevirt/crds.yaml), which the migrator watches. */
  async installCrds(): Promise<void> {
    await installCrds(
      loadKubeConfig(this.cluster.kubeconfigPath),
      join(packageRoot(), 'lab', 'kubevirt'),
      60_000,
    );
  }

  /** Creates the VMI and its launcher pod, and waits until the guest's workload runs. */
  async startVm(spec: VmSpec, timeoutMs = 180_000): Promise<VmPlace> {
    const vmi = {
      apiVersion: `${KUBEVIRT_GROUP}/${KUBEVIRT_VERSION}`,
      kind: 'VirtualMachineInstance',
      metadata: { name: spec.name, namespace: spec.namespace },
      spec: {
        evictionStrategy: 'LiveMigrate',
        domain: {
          memory: { guest: `${spec.memoryMiB ?? 128}Mi` },
          devices: { disks: [{ name: 'disk', disk: { bus: 'virtio' }, cache: spec.cacheMode ?? 'none' }] },
        },
        volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: spec.claim } }],
      },
    };
    const created = await this.#create(vmi);
    const vmiUid = created.metadata.uid;
    await this.#status('vmi', spec.namespace, spec.name, { phase: 'Scheduling' });
    const pod = `virt-launcher-${spec.name}-${suffix()}`;
    await this.#create(
      launcherPod({
        namespace: spec.namespace,
        name: pod,
        vm: spec.name,
        vmiUid,
        claim: spec.claim,
        node: spec.node,
        ...(spec.cacheMode ? { cacheMode: spec.cacheMode } : {}),
        ...(spec.memoryMiB ? { memoryMiB: spec.memoryMiB } : {}),
        ...(spec.guest ? { guest: spec.guest } : {}),
      }),
    );
    const place = await this.#waitRunning(spec.namespace, pod, spec.name, vmiUid, timeoutMs);
    await this.#status('vmi', spec.namespace, spec.name, { phase: 'Running', nodeName: place.node });
    await waitFor(
      `the guest of ${spec.name} to start its workload`,
      async () => (await this.consoleLog(place)).includes('tandem-guest: ready'),
      timeoutMs,
    );
    return place;
  }

  /** Where the VM runs: the running launcher pod on the VMI's node. */
  async locate(namespace: string, vm: string): Promise<VmPlace> {
    const vmi = JSON.parse(
      (await this.cluster.kubectl(['-n', namespace, 'get', VMI, vm, '-o', 'json'])).stdout,
    ) as { metadata: { uid: string }; status?: { nodeName?: string } };
    const pods = await this.#pods(namespace, vmi.metadata.uid);
    const pod = pods.find(
      (p) =>
        p.status.phase === 'Running' &&
        !p.metadata.deletionTimestamp &&
        p.spec.nodeName === vmi.status?.nodeName,
    );
    if (!pod) throw new Error(`VM ${namespace}/${vm} has no running launcher pod on ${vmi.status?.nodeName}`);
    return placeOf(namespace, vm, vmi.metadata.uid, pod);
  }

  /** The claim the VMI's disk is on (its first persistentVolumeClaim volume). */
  async claimOf(namespace: string, vm: string): Promise<string> {
    const vmi = JSON.parse(
      (await this.cluster.kubectl(['-n', namespace, 'get', VMI, vm, '-o', 'json'])).stdout,
    ) as { spec?: { volumes?: { persistentVolumeClaim?: { claimName?: string } }[] } };
    const claim = vmi.spec?.volumes?.find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim?.claimName;
    if (!claim) throw new Error(`VMI ${namespace}/${vm} has no persistentVolumeClaim volume`);
    return claim;
  }

  /** The guest's serial console so far: the launcher pod's log. */
  async consoleLog(place: Pick<VmPlace, 'namespace' | 'pod'>): Promise<string> {
    const out = await this.cluster.kubectl(['-n', place.namespace, 'logs', place.pod], {
      allowFailure: true,
      timeoutMs: 30_000,
    });
    return out.stdout;
  }

  /** One QMP command on the QEMU of a pod (QMP takes one client at a time: connect, run, close). */
  async qmp<T>(place: VmPlace, command: string, args?: Record<string, unknown>): Promise<T> {
    const client = await QmpClient.connect(place.podIp, QMP_PORT);
    try {
      return await client.execute<T>(command, args);
    } finally {
      client.close();
    }
  }

  /** A live migration of the VM to `targetNode`, in KubeVirt's order (see the module comment). */
  async migrate(
    namespace: string,
    vm: string,
    targetNode: string,
    options: MigrateOptions = {},
  ): Promise<MigrationOutcome> {
    const timeoutMs = options.timeoutMs ?? 300_000;
    const source = await this.locate(namespace, vm);
    if (source.node === targetNode) throw new Error(`VM ${vm} already runs on ${targetNode}`);
    const started = Date.now();
    const vmimName = `${vm}-migration-${suffix()}`;
    const vmim = await this.#create({
      apiVersion: `${KUBEVIRT_GROUP}/${KUBEVIRT_VERSION}`,
      kind: 'VirtualMachineInstanceMigration',
      metadata: { name: vmimName, namespace },
      spec: { vmiName: vm },
    });
    const migrationUid = vmim.metadata.uid;
    const phase = (p: MigrationPhase, migrationState?: MigrationState) =>
      this.#status('vmim', namespace, vmimName, migrationState ? { phase: p, migrationState } : { phase: p });
    await phase('Pending');

    const targetPod = `virt-launcher-${vm}-${suffix()}`;
    // The same machine as the source's (QEMU's command line copied), waiting for the stream.
    await this.#create(
      migrationTargetPod(await this.#podJson(namespace, source.pod), {
        name: targetPod,
        node: targetNode,
        migration: { uid: migrationUid, name: vmimName },
      }),
    );
    await phase('Scheduling');
    const target = await this.#waitRunning(namespace, targetPod, vm, source.vmiUid, timeoutMs);
    const targetPodMs = Date.now() - started;
    const state: MigrationState = {
      migrationUid,
      sourceNode: source.node,
      sourcePod: source.pod,
      targetNode: target.node,
      targetPod: target.pod,
    };
    await phase('Scheduled', state);
    await this.#status('vmi', namespace, vm, { migrationState: state });

    await phase('PreparingTarget', state);
    await waitFor(
      `QEMU in ${targetPod} to wait for the migration`,
      async () =>
        (await this.qmp<{ status: string }>(target, 'query-status').catch(() => ({ status: '' }))).status ===
        'inmigrate',
      60_000,
    );
    await options.beforeMigrate?.(target);
    await phase('TargetReady', state);

    const client = await QmpClient.connect(source.podIp, QMP_PORT);
    const finish = async (
      succeeded: boolean,
      info: MigrationInfo,
      failure?: string,
    ): Promise<MigrationOutcome> => {
      const end = new Date().toISOString();
      if (succeeded) {
        const done: MigrationState = {
          ...state,
          endTimestamp: end,
          completed: true,
          targetNodeDomainReadyTimestamp: end,
        };
        await this.#status('vmi', namespace, vm, { nodeName: target.node, migrationState: done });
        await phase('Succeeded', done);
        // The source's QEMU exits after a completed migration, and with it the launcher pod. On
        // the connection already open: QMP serves one client at a time. QEMU may close it
        // before it answers.
        await client.execute('quit').catch(() => undefined);
        await this.#waitPhase(namespace, source.pod, 'Succeeded', 60_000);
      } else {
        const failed: MigrationState = {
          ...state,
          endTimestamp: end,
          completed: true,
          failed: true,
          failureReason: failure,
        };
        await this.#status('vmi', namespace, vm, { migrationState: failed });
        await phase('Failed', failed);
        await this.cluster.kubectl([
          '-n',
          namespace,
          'delete',
          'pod',
          target.pod,
          '--wait=false',
          '--ignore-not-found',
        ]);
      }
      return {
        vmim: vmimName,
        succeeded,
        source,
        target,
        now: succeeded ? target : source,
        ...(info.downtime === undefined ? {} : { downtimeMs: info.downtime }),
        ...(info['total-time'] === undefined ? {} : { totalMs: info['total-time'] }),
        ...(failure === undefined ? {} : { failure }),
        targetPodMs,
      };
    };

    try {
      const parameters: Record<string, unknown> = {};
      if (options.maxBandwidth !== undefined) parameters['max-bandwidth'] = options.maxBandwidth;
      if (options.downtimeLimitMs !== undefined) parameters['downtime-limit'] = options.downtimeLimitMs;
      if (Object.keys(parameters).length > 0) await client.execute('migrate-set-parameters', parameters);
      const startTimestamp = new Date().toISOString();
      Object.assign(state, { startTimestamp, mode: 'PreCopy' });
      await this.#status('vmi', namespace, vm, { migrationState: state });
      await phase('Running', state);
      await client.execute('migrate', { uri: `tcp:${target.podIp}:${MIGRATION_PORT}` });
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const info = await client.execute<MigrationInfo>('query-migrate');
        if (info.status === 'completed') return await finish(true, info);
        if (info.status === 'failed' || info.status === 'cancelled')
          return await finish(false, info, info['error-desc'] ?? `QEMU reports the migration ${info.status}`);
        if (Date.now() > deadline) {
          await client.execute('migrate_cancel').catch(() => undefined);
          return await finish(false, info, `not completed within ${timeoutMs} ms`);
        }
        await options.onProgress?.(info, target);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      client.close();
    }
  }

  /** Deletes the VMI's launcher pods and the VMI (and its migrations). */
  async deleteVm(namespace: string, vm: string): Promise<void> {
    const out = await this.cluster.kubectl(
      ['-n', namespace, 'get', VMI, vm, '-o', 'jsonpath={.metadata.uid}'],
      {
        allowFailure: true,
      },
    );
    const uid = out.stdout.trim();
    if (uid !== '') {
      await this.cluster.kubectl(
        [
          '-n',
          namespace,
          'delete',
          'pods',
          '-l',
          `${CREATED_BY_LABEL}=${uid}`,
          '--wait=true',
          '--timeout=120s',
        ],
        { timeoutMs: 150_000 },
      );
    }
    await this.cluster.kubectl(['-n', namespace, 'delete', VMIM, '--all', '--ignore-not-found']);
    await this.cluster.kubectl(['-n', namespace, 'delete', VMI, vm, '--ignore-not-found']);
  }

  async #podJson(namespace: string, pod: string): Promise<LauncherPodJson> {
    const out = await this.cluster.kubectl(['-n', namespace, 'get', 'pod', pod, '-o', 'json']);
    return JSON.parse(out.stdout) as LauncherPodJson;
  }

  async #pods(namespace: string, vmiUid: string): Promise<PodJson[]> {
    const out = await this.cluster.kubectl([
      '-n',
      namespace,
      'get',
      'pods',
      '-l',
      `${CREATED_BY_LABEL}=${vmiUid}`,
      '-o',
      'json',
    ]);
    return (JSON.parse(out.stdout) as { items: PodJson[] }).items;
  }

  async #waitRunning(
    namespace: string,
    pod: string,
    vm: string,
    vmiUid: string,
    timeoutMs: number,
  ): Promise<VmPlace> {
    let found: PodJson | undefined;
    await waitFor(
      `launcher pod ${namespace}/${pod} running`,
      async () => {
        const out = await this.cluster.kubectl(['-n', namespace, 'get', 'pod', pod, '-o', 'json'], {
          allowFailure: true,
        });
        if (out.code !== 0) return false;
        found = JSON.parse(out.stdout) as PodJson;
        if (found.status.phase === 'Failed' || found.status.phase === 'Succeeded')
          throw new Error(`launcher pod ${pod} ended ${found.status.phase} before it ran the VM`);
        return found.status.phase === 'Running' && Boolean(found.status.podIP);
      },
      timeoutMs,
    );
    return placeOf(namespace, vm, vmiUid, found as PodJson);
  }

  async #waitPhase(namespace: string, pod: string, phase: string, timeoutMs: number): Promise<void> {
    await waitFor(
      `pod ${namespace}/${pod} ${phase}`,
      async () =>
        (
          await this.cluster.kubectl(['-n', namespace, 'get', 'pod', pod, '-o', 'jsonpath={.status.phase}'], {
            allowFailure: true,
          })
        ).stdout.trim() === phase,
      timeoutMs,
    );
  }

  async #create(object: object): Promise<{ metadata: { uid: string; name: string } }> {
    const out = await this.cluster.kubectl(['create', '-f', '-', '-o', 'json'], {
      input: JSON.stringify(object),
    });
    return JSON.parse(out.stdout) as { metadata: { uid: string; name: string } };
  }

  /** Writes status through the status subresource, as KubeVirt's controllers do (merge patch). */
  async #status(kind: 'vmi' | 'vmim', namespace: string, name: string, status: object): Promise<void> {
    await this.cluster.kubectl([
      '-n',
      namespace,
      'patch',
      kind === 'vmi' ? VMI : VMIM,
      name,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status }),
    ]);
  }
}

function placeOf(namespace: string, vm: string, vmiUid: string, pod: PodJson): VmPlace {
  return {
    namespace,
    vm,
    vmiUid,
    pod: pod.metadata.name,
    node: pod.spec.nodeName ?? '',
    podIp: pod.status.podIP ?? '',
  };
}

/** KubeVirt names launcher pods virt-launcher-<vm>-<5 random characters>. */
function suffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  return [...randomBytes(5)].map((b) => alphabet[b % alphabet.length]).join('');
}
