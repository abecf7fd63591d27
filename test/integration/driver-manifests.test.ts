import { join } from 'node:path';
import { CoreV1Api, type KubernetesObject, KubernetesObjectApi } from '@kubernetes/client-node';
import { readManifests } from '../../lib/kube/manifests.js';
import { manifestsDir } from '../../lib/paths.js';
import { testKubeConfig, uniqueName } from '../harness/cluster.js';

/**
 * The apiserver's own validation of every object in manifests/driver and the example
 * StorageClasses (server-side dry run: nothing is stored). The namespaced objects go to a fresh
 * namespace instead of tandem-system and cluster-scoped ones get a suffix, so the shared test
 * cluster is left as it was and what other tests installed there does not collide.
 */
describe('manifests/driver on the real kube-apiserver', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const namespace = uniqueName('manifests');

  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: namespace } } });
  });
  afterAll(async () => {
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  });

  const relocate = (object: KubernetesObject): KubernetesObject => {
    const copy = structuredClone(object) as KubernetesObject & {
      subjects?: { namespace?: string }[];
    };
    if (copy.metadata?.namespace) copy.metadata.namespace = namespace;
    else if (copy.metadata?.name && copy.kind !== 'CustomResourceDefinition') {
      // Cluster-scoped objects cannot move to the namespace; other tests on this cluster install
      // the real ones (the RBAC tests), so the dry run uses names of its own.
      copy.metadata.name = `${copy.metadata.name}-${namespace}`;
    }
    for (const subject of copy.subjects ?? []) if (subject.namespace) subject.namespace = namespace;
    return copy;
  };

  it('accepts every object (dry run)', async () => {
    const all = [
      ...(await readManifests(join(manifestsDir(), 'driver'))),
      ...(await readManifests(join(manifestsDir(), 'examples'))).filter((o) => o.kind === 'StorageClass'),
    ];
    expect(all.length).toBeGreaterThan(10);
    const refused: string[] = [];
    for (const object of all) {
      try {
        await objects.create(relocate(object), undefined, 'All');
      } catch (err) {
        refused.push(
          `${object.kind}/${object.metadata?.name}: ${String((err as { body?: unknown }).body ?? err)}`,
        );
      }
    }
    expect(refused).toEqual([]);
  });
});
