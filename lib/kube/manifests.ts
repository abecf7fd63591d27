import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadAllYaml,
  PatchStrategy,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';

const FIELD_MANAGER = 'tandem';

/** Every object in the YAML files of a folder, in file-name order. */
export async function readManifests(dir: string): Promise<KubernetesObject[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).sort();
  const objects: KubernetesObject[] = [];
  for (const file of files) {
    const docs = loadAllYaml(await readFile(join(dir, file), 'utf8')) as (KubernetesObject | null)[];
    for (const doc of docs) if (doc) objects.push(doc);
  }
  return objects;
}

/**
 * Creates or updates objects by server-side apply, so running it again is a
 * no-op and fields owned by others are left alone.
 */
export async function applyObjects(kc: KubeConfig, objects: readonly KubernetesObject[]): Promise<void> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  for (const object of objects) {
    await client.patch(object, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
  }
}

/** Waits until every named CRD reports Established, so its resources can be used. */
export async function waitForCrdsEstablished(
  kc: KubeConfig,
  names: readonly string[],
  timeoutMs = 30_000,
): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const crd = await api.readCustomResourceDefinition({ name });
      const established = crd.status?.conditions?.some(
        (c) => c.type === 'Established' && c.status === 'True',
      );
      if (established) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not established after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Applies every CRD in a folder and waits until the apiserver serves them.
 * Established is not enough: for a moment after it, a LIST still answers 429
 * "storage is (re)initializing" while the watch cache fills, so this waits
 * until a LIST of each new resource succeeds.
 */
export async function installCrds(kc: KubeConfig, dir: string, timeoutMs = 30_000): Promise<string[]> {
  const crds = (await readManifests(dir)).filter(
    (o) => o.kind === 'CustomResourceDefinition',
  ) as V1CustomResourceDefinition[];
  await applyObjects(kc, crds);
  const names = crds.map((c) => c.metadata?.name ?? '');
  await waitForCrdsEstablished(kc, names, timeoutMs);
  const api = kc.makeApiClient(CustomObjectsApi);
  const deadline = Date.now() + timeoutMs;
  for (const crd of crds) {
    const version = crd.spec.versions.find((v) => v.storage)?.name ?? '';
    const coordinates = { group: crd.spec.group, version, plural: crd.spec.names.plural, limit: 1 };
    for (;;) {
      const listed = await (crd.spec.scope === 'Namespaced'
        ? api.listCustomObjectForAllNamespaces(coordinates)
        : api.listClusterCustomObject(coordinates)
      ).then(
        () => true,
        () => false,
      );
      if (listed) break;
      if (Date.now() > deadline)
        throw new Error(`${crd.metadata?.name} cannot be listed after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return names;
}
