import { ApiException } from '@kubernetes/client-node';
import { newVolume, type Volume } from '../../lib/api/volume.js';
import { keepWatching } from '../../lib/kube/informer.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';

describe('Volume custom resource on the real kube-apiserver', () => {
  const client = new VolumeClient(testKubeConfig());
  const created: string[] = [];

  afterAll(async () => {
    for (const name of created) await client.delete(name).catch(() => undefined);
  });

  const make = async (spec: Parameters<typeof newVolume>[1]): Promise<Volume> => {
    const name = uniqueName('vol');
    const volume = await client.create(newVolume(name, spec));
    created.push(name);
    return volume;
  };

  it('creates a Volume, updates its status, and an informer sees the change', async () => {
    const informer = client.informer();
    const seen: Volume[] = [];
    informer.on('add', (v) => seen.push(v));
    informer.on('update', (v) => seen.push(v));
    const watching = await keepWatching(informer, { name: 'volumes' });
    try {
      const volume = await make({
        sizeBytes: 64 << 20,
        numberOfReplicas: 3,
        accessMode: 'ReadWriteOnce',
        volumeMode: 'Filesystem',
      });
      expect(volume.spec.migratable).toBe(false); // schema default applied by the apiserver
      expect(volume.spec.engines).toEqual([]);

      const updated = await client.replaceStatus({
        ...volume,
        status: { state: 'Attached', robustness: 'Healthy', node: 'node-a', epoch: 1, healthyReplicas: 3 },
      });
      expect(updated.status?.state).toBe('Attached');

      const observed = await eventually(() =>
        seen.find((v) => v.metadata.name === volume.metadata.name && v.status?.state === 'Attached'),
      );
      expect(observed.status).toMatchObject({
        robustness: 'Healthy',
        node: 'node-a',
        epoch: 1,
        healthyReplicas: 3,
      });
      expect(informer.get(volume.metadata.name)?.status?.state).toBe('Attached');
    } finally {
      await watching.stop();
    }
  });

  it('refuses a stale status update (optimistic concurrency by resourceVersion)', async () => {
    const volume = await make({
      sizeBytes: 1 << 20,
      numberOfReplicas: 1,
      accessMode: 'ReadWriteOnce',
      volumeMode: 'Block',
    });
    await client.replaceStatus({ ...volume, status: { epoch: 2 } });
    await expect(client.replaceStatus({ ...volume, status: { epoch: 3 } })).rejects.toMatchObject({
      code: 409,
    });
  });

  const invalid: [string, object, RegExp][] = [
    [
      'too many replicas',
      { sizeBytes: 1 << 20, numberOfReplicas: 9, accessMode: 'ReadWriteOnce', volumeMode: 'Block' },
      /numberOfReplicas/,
    ],
    [
      'an unknown access mode',
      { sizeBytes: 1 << 20, numberOfReplicas: 1, accessMode: 'ReadMostly', volumeMode: 'Block' },
      /accessMode/,
    ],
    [
      'a size that is not 4 KiB aligned',
      { sizeBytes: (1 << 20) + 1, numberOfReplicas: 1, accessMode: 'ReadWriteOnce', volumeMode: 'Block' },
      /multiple of 4096/,
    ],
    [
      'migratable on a non-RWX volume',
      {
        sizeBytes: 1 << 20,
        numberOfReplicas: 1,
        accessMode: 'ReadWriteOnce',
        volumeMode: 'Block',
        migratable: true,
      },
      /migratable volumes must be ReadWriteMany/,
    ],
    [
      'three engines',
      {
        sizeBytes: 1 << 20,
        numberOfReplicas: 1,
        accessMode: 'ReadWriteMany',
        volumeMode: 'Block',
        migratable: true,
        engines: [{ node: 'a' }, { node: 'b' }, { node: 'c' }],
      },
      /engines/,
    ],
    [
      'two engines on a non-migratable volume',
      {
        sizeBytes: 1 << 20,
        numberOfReplicas: 1,
        accessMode: 'ReadWriteOnce',
        volumeMode: 'Block',
        engines: [{ node: 'a' }, { node: 'b' }],
      },
      /only a migratable volume may have two engines/,
    ],
  ];

  it.each(invalid)('the schema refuses %s', async (_what, spec, message) => {
    const attempt = client.create({ ...newVolume(uniqueName('bad'), spec as Volume['spec']) });
    const err = await attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApiException);
    expect((err as ApiException<string>).code).toBe(422);
    expect(String((err as ApiException<string>).body)).toMatch(message);
  });

  it('refuses shrinking a volume and changing a running migration target', async () => {
    const volume = await make({
      sizeBytes: 8 << 20,
      numberOfReplicas: 2,
      accessMode: 'ReadWriteMany',
      volumeMode: 'Block',
      migratable: true,
    });
    const kc = testKubeConfig();
    const { CustomObjectsApi } = await import('@kubernetes/client-node');
    const api = kc.makeApiClient(CustomObjectsApi);
    const coordinates = {
      group: 'tandem.dev',
      version: 'v1alpha1',
      plural: 'volumes',
      name: volume.metadata.name,
    };
    await expect(
      api.replaceClusterCustomObject({
        ...coordinates,
        body: { ...volume, spec: { ...volume.spec, sizeBytes: 4 << 20 } },
      }),
    ).rejects.toMatchObject({ code: 422, body: expect.stringMatching(/never shrink/) });

    const migrating = await client.replaceStatus({
      ...volume,
      status: { migration: { source: 'node-a', target: 'node-b' } },
    });
    await expect(
      client.replaceStatus({ ...migrating, status: { migration: { source: 'node-a', target: 'node-c' } } }),
    ).rejects.toMatchObject({ code: 422, body: expect.stringMatching(/running migration cannot change/) });
  });
});
