/**
 * Plays KubeVirt's controllers and the kubelet for the migration tests (neither runs here): it
 * writes what they write, with KubeVirt's real labels, phases and status shapes. Following
 * KubeVirt's source (pkg/virt-controller/watch/migration, vmi controllers): virt-controller creates
 * the VMI's launcher pod labelled `kubevirt.io=virt-launcher`, `kubevirt.io/created-by=<VMI UID>`,
 * `vm.kubevirt.io/name`; a migration's target launcher also carries `kubevirt.io/migrationJobUID`
 * (the VMIM's UID); the VMIM moves through Pending, Scheduling, Scheduled, PreparingTarget,
 * TargetReady, Running, then Succeeded or Failed; the VMI's `status.migrationState` names source
 * and target node and pod and ends `completed` (and `failed` when it failed); the source launcher
 * exits (Succeeded) after a completed migration, and the target pod is deleted after a failed one.
 * The kubelet's part is the pod phase (Running, Succeeded, Failed).
 */
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import {
  APP_LABEL,
  CREATED_BY_LABEL,
  KUBEVIRT_GROUP,
  KUBEVIRT_VERSION,
  LAUNCHER_ROLE,
  MIGRATION_JOB_LABEL,
  type MigrationPhase,
  type MigrationState,
  VM_NAME_LABEL,
  VMI_PLURAL,
  VMIM_PLURAL,
} from '../../lib/kubevirt/vocabulary.js';

export class KubeVirtActor {
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    readonly namespace: string,
    readonly claim: string,
  ) {
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#custom = kc.makeApiClient(CustomObjectsApi);
  }

  /** A VMI named after its VM; returns its UID (the apiserver assigns it). */
  async createVmi(name: string, node: string): Promise<string> {
    const vmi = (await this.#custom.createNamespacedCustomObject({
      group: KUBEVIRT_GROUP,
      version: KUBEVIRT_VERSION,
      namespace: this.namespace,
      plural: VMI_PLURAL,
      body: {
        apiVersion: `${KUBEVIRT_GROUP}/${KUBEVIRT_VERSION}`,
        kind: 'VirtualMachineInstance',
        metadata: { name },
        spec: {
          domain: { devices: {} },
          volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: this.claim } }],
        },
      },
    })) as { metadata: { uid: string } };
    await this.setVmiStatus(name, { phase: 'Running', nodeName: node });
    return vmi.metadata.uid;
  }

  async setVmiStatus(
    name: string,
    status: { phase?: string; nodeName?: string; migrationState?: MigrationState },
  ) {
    await this.#replaceStatus(VMI_PLURAL, name, status);
  }

  /** A launcher pod of the VM on `node`; `migrationJobUid` makes it a migration target. */
  async createLauncher(name: string, node: string, vm: string, vmiUid: string, migrationJobUid?: string) {
    const labels: Record<string, string> = {
      [APP_LABEL]: LAUNCHER_ROLE,
      [VM_NAME_LABEL]: vm,
      [CREATED_BY_LABEL]: vmiUid,
    };
    if (migrationJobUid) labels[MIGRATION_JOB_LABEL] = migrationJobUid;
    const pod: V1Pod = {
      metadata: { name, labels },
      spec: {
        nodeName: node,
        containers: [{ name: 'compute', image: 'virt-launcher:test' }],
        volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: this.claim } }],
      },
    };
    await this.#core.createNamespacedPod({ namespace: this.namespace, body: pod });
  }

  /** What the kubelet reports. */
  async setPodPhase(name: string, phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed') {
    const pod = await this.#core.readNamespacedPod({ name, namespace: this.namespace });
    pod.status = { ...pod.status, phase };
    await this.#core.replaceNamespacedPodStatus({ name, namespace: this.namespace, body: pod });
  }

  async deletePod(name: string) {
    await this.#core.deleteNamespacedPod({ name, namespace: this.namespace, gracePeriodSeconds: 0 });
  }

  /** A VMIM for the VMI; returns its UID. */
  async createMigration(name: string, vmiName: string): Promise<string> {
    const vmim = (await this.#custom.createNamespacedCustomObject({
      group: KUBEVIRT_GROUP,
      version: KUBEVIRT_VERSION,
      namespace: this.namespace,
      plural: VMIM_PLURAL,
      body: {
        apiVersion: `${KUBEVIRT_GROUP}/${KUBEVIRT_VERSION}`,
        kind: 'VirtualMachineInstanceMigration',
        metadata: { name },
        spec: { vmiName },
      },
    })) as { metadata: { uid: string } };
    await this.setMigrationPhase(name, 'Pending');
    return vmim.metadata.uid;
  }

  async setMigrationPhase(name: string, phase: MigrationPhase, migrationState?: MigrationState) {
    await this.#replaceStatus(VMIM_PLURAL, name, migrationState ? { phase, migrationState } : { phase });
  }

  async #replaceStatus(plural: string, name: string, status: object) {
    const coordinates = {
      group: KUBEVIRT_GROUP,
      version: KUBEVIRT_VERSION,
      namespace: this.namespace,
      plural,
      name,
    };
    const current = (await this.#custom.getNamespacedCustomObject(coordinates)) as Record<string, unknown>;
    const previous = (current.status ?? {}) as Record<string, unknown>;
    await this.#custom.replaceNamespacedCustomObjectStatus({
      ...coordinates,
      body: { ...current, status: { ...previous, ...status } },
    });
  }
}
