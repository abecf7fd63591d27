/**
 * KubeVirt's VMIs and VMIMs, watched only while KubeVirt's CRDs exist: a CRD informer notices
 * them being installed after the migrator started (or removed), and the object informers start
 * (or stop) then. Without them the migrator decides from pods alone.
 */
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import { type Cache, keepWatching } from '../lib/kube/informer.js';
import {
  KUBEVIRT_GROUP,
  KUBEVIRT_VERSION,
  type VirtualMachineInstance,
  type VirtualMachineInstanceMigration,
  VMI_PLURAL,
  VMIM_PLURAL,
} from '../lib/kubevirt/vocabulary.js';

const NEEDED = [`${VMI_PLURAL}.${KUBEVIRT_GROUP}`, `${VMIM_PLURAL}.${KUBEVIRT_GROUP}`];

interface Running {
  vmis: Cache<KubernetesObject>;
  vmims: Cache<KubernetesObject>;
  stops: (() => Promise<void>)[];
}

export class KubeVirtWatch {
  readonly #kc: KubeConfig;
  readonly #log: Logger;
  readonly #onChange: () => void;
  readonly #crds: Cache<V1CustomResourceDefinition>;
  #crdWatch: { stop: () => Promise<void> } | undefined;
  #running: Running | undefined;
  #transition: Promise<void> = Promise.resolve();

  constructor(kc: KubeConfig, log: Logger, onChange: () => void) {
    this.#kc = kc;
    this.#log = log;
    this.#onChange = onChange;
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    this.#crds = makeInformer<V1CustomResourceDefinition>(
      kc,
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      () => ext.listCustomResourceDefinition(),
    );
  }

  async start(): Promise<void> {
    for (const event of ['add', 'update', 'delete'] as const) this.#crds.on(event, () => this.#check());
    this.#crdWatch = await keepWatching(this.#crds, { name: 'crds', logger: this.#log });
    this.#check();
    await this.#transition;
  }

  async stop(): Promise<void> {
    await this.#crdWatch?.stop();
    await this.#transition;
    await this.#stopObjects();
  }

  /** What the caches hold; both undefined while KubeVirt's CRDs are not installed. */
  lists(): { vmis?: VirtualMachineInstance[]; vmims?: VirtualMachineInstanceMigration[] } {
    if (this.#running === undefined) return {};
    // The schema stand-ins and KubeVirt's CRDs serve these shapes; only the fields typed are read.
    return {
      vmis: [...this.#running.vmis.list()] as VirtualMachineInstance[],
      vmims: [...this.#running.vmims.list()] as VirtualMachineInstanceMigration[],
    };
  }

  #installed(): boolean {
    return NEEDED.every((name) => {
      const crd = this.#crds.get(name);
      const established = crd?.status?.conditions?.some(
        (c) => c.type === 'Established' && c.status === 'True',
      );
      return established === true && !crd?.metadata?.deletionTimestamp;
    });
  }

  #check(): void {
    this.#transition = this.#transition.then(async () => {
      const want = this.#installed();
      if (want && this.#running === undefined) await this.#startObjects();
      else if (!want && this.#running !== undefined) {
        this.#log.info('KubeVirt CRDs removed: deciding from pods only');
        await this.#stopObjects();
        this.#onChange();
      }
    });
  }

  async #startObjects(): Promise<void> {
    const api = this.#kc.makeApiClient(CustomObjectsApi);
    const list = (plural: string) => async () =>
      (await api.listClusterCustomObject({
        group: KUBEVIRT_GROUP,
        version: KUBEVIRT_VERSION,
        plural,
      })) as KubernetesListObject<KubernetesObject>;
    const path = (plural: string) => `/apis/${KUBEVIRT_GROUP}/${KUBEVIRT_VERSION}/${plural}`;
    const vmis = makeInformer(this.#kc, path(VMI_PLURAL), list(VMI_PLURAL));
    const vmims = makeInformer(this.#kc, path(VMIM_PLURAL), list(VMIM_PLURAL));
    for (const cache of [vmis, vmims])
      for (const event of ['add', 'update', 'delete'] as const) cache.on(event, () => this.#onChange());
    try {
      const watches = await Promise.all([
        keepWatching(vmis, { name: 'vmis', logger: this.#log }),
        keepWatching(vmims, { name: 'vmims', logger: this.#log }),
      ]);
      this.#running = { vmis, vmims, stops: watches.map((w) => w.stop) };
      this.#log.info('KubeVirt CRDs present: watching VMIs and VMIMs');
      this.#onChange();
    } catch (err) {
      this.#log.warn({ err: errorMessage(err) }, 'could not watch KubeVirt objects');
    }
  }

  async #stopObjects(): Promise<void> {
    const running = this.#running;
    this.#running = undefined;
    await Promise.all((running?.stops ?? []).map((stop) => stop()));
  }
}
