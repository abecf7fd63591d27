import {
  CustomObjectsApi,
  type Informer,
  type KubeConfig,
  type KubernetesListObject,
  makeInformer,
  type ObjectCache,
} from '@kubernetes/client-node';
import { GROUP, VERSION, VOLUME_PLURAL, type Volume, type VolumeList } from '../api/volume.js';

const COLLECTION_PATH = `/apis/${GROUP}/${VERSION}/${VOLUME_PLURAL}`;
const coordinates = { group: GROUP, version: VERSION, plural: VOLUME_PLURAL };

/** Typed access to the cluster-scoped Volume resources. */
export class VolumeClient {
  private readonly api: CustomObjectsApi;

  constructor(private readonly kc: KubeConfig) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  async list(): Promise<VolumeList> {
    return (await this.api.listClusterCustomObject(coordinates)) as VolumeList;
  }

  async get(name: string): Promise<Volume> {
    return (await this.api.getClusterCustomObject({ ...coordinates, name })) as Volume;
  }

  async create(volume: Volume): Promise<Volume> {
    return (await this.api.createClusterCustomObject({ ...coordinates, body: volume })) as Volume;
  }

  /** Replaces metadata and spec (status is ignored by the apiserver); 409 when resourceVersion is stale. */
  async replace(volume: Volume): Promise<Volume> {
    return (await this.api.replaceClusterCustomObject({
      ...coordinates,
      name: volume.metadata.name,
      body: volume,
    })) as Volume;
  }

  /** Replaces status only; fails with 409 when resourceVersion is stale (optimistic concurrency). */
  async replaceStatus(volume: Volume): Promise<Volume> {
    return (await this.api.replaceClusterCustomObjectStatus({
      ...coordinates,
      name: volume.metadata.name,
      body: volume,
    })) as Volume;
  }

  async delete(name: string): Promise<void> {
    await this.api.deleteClusterCustomObject({ ...coordinates, name });
  }

  /** A list-watch cache of every Volume; call start() on it. */
  informer(): Informer<Volume> & ObjectCache<Volume> {
    return makeInformer<Volume>(
      this.kc,
      COLLECTION_PATH,
      async () => (await this.list()) as KubernetesListObject<Volume>,
    );
  }
}
