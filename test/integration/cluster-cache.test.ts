import { CoreV1Api, StorageV1Api } from '@kubernetes/client-node';
import { CachedClusterView } from '../../webhook/cluster-cache.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';

/** The webhook's lookups: from caches when they have the object, from the API when they are cold or behind. */
describe('CachedClusterView', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const storage = kc.makeApiClient(StorageV1Api);
  const namespace = uniqueName('cache');
  const className = uniqueName('cache-class');

  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await storage.createStorageClass({
      body: { metadata: { name: className }, provisioner: 'example.com/none' },
    });
  });
  afterAll(async () => {
    await storage.deleteStorageClass({ name: className }).catch(() => undefined);
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  });

  it('answers from the API while the caches are cold (never started)', async () => {
    const cold = new CachedClusterView(kc);
    expect(cold.ready).toBe(false);
    expect((await cold.storageClass(className))?.provisioner).toBe('example.com/none');
    expect(await cold.storageClass(uniqueName('missing'))).toBeUndefined();
    expect(await cold.claim(namespace, 'missing')).toBeUndefined();
  });

  it('finds objects created a moment ago, before the cache has seen them', async () => {
    const view = new CachedClusterView(kc);
    view.start();
    try {
      await eventually(() => (view.ready ? true : undefined), 30_000);
      const name = uniqueName('claim');
      await core.createNamespacedPersistentVolumeClaim({
        namespace,
        body: {
          metadata: { name },
          spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
        },
      });
      // Asked at once: either the cache already has it or the fallback GET finds it; never "absent".
      expect((await view.claim(namespace, name))?.metadata?.name).toBe(name);

      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name: 'user', labels: { 'kubevirt.io': 'virt-launcher' } },
          spec: {
            containers: [{ name: 'c', image: 'x' }],
            volumes: [{ name: 'd', persistentVolumeClaim: { claimName: name } }],
          },
        },
      });
      expect((await view.podsUsingClaim(namespace, name)).map((p) => p.metadata?.name)).toEqual(['user']);
      expect(await view.podsUsingClaim(namespace, 'other-claim')).toEqual([]);
      // And once the watch has delivered it, from the cache.
      await eventually(async () => ((await view.pod(namespace, 'user')) ? true : undefined));
    } finally {
      await view.stop();
    }
  });
});
