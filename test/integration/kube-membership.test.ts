import { ApiException } from '@kubernetes/client-node';
import { KubeMembershipStore } from '../../driver/engine/kube-membership.js';
import { type Membership, MembershipError } from '../../driver/engine/membership.js';
import { type EngineStatus, newVolume, type Volume } from '../../lib/api/volume.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import { testKubeConfig, uniqueName } from '../harness/cluster.js';

describe('KubeMembershipStore on the real kube-apiserver', () => {
  const client = new VolumeClient(testKubeConfig());
  const created: string[] = [];

  afterAll(async () => {
    for (const name of created) await client.delete(name).catch(() => undefined);
  });

  /** A migratable volume attached on node a with two replicas at epoch 3. */
  const attachedVolume = async (): Promise<Volume> => {
    const name = uniqueName('mbr');
    const volume = await client.create(
      newVolume(name, {
        sizeBytes: 16 << 20,
        numberOfReplicas: 2,
        accessMode: 'ReadWriteMany',
        volumeMode: 'Block',
        migratable: true,
      }),
    );
    created.push(name);
    return client.replaceStatus({
      ...volume,
      status: {
        state: 'Attached',
        robustness: 'Healthy',
        node: 'node-a',
        healthyReplicas: 2,
        epoch: 3,
        replicas: [
          { node: 'node-a', address: '10.0.0.1:7410', mode: 'ReadWrite' },
          { node: 'node-b', address: '10.0.0.2:7410', mode: 'ReadWrite' },
        ],
        engines: [{ node: 'node-a', id: 'node-a/100/x' }],
        conditions: [{ type: 'Ready', status: 'True', reason: 'Attached' }],
      },
    });
  };

  const bump = (m: Membership): Membership => ({ ...m, epoch: m.epoch + 1 });

  it('reads the record and applies a change, keeping the rest of status', async () => {
    const volume = await attachedVolume();
    const store = new KubeMembershipStore(client, volume.metadata.name);
    expect(await store.read()).toEqual({
      epoch: 3,
      sizeBytes: 16 << 20,
      replicas: [
        { node: 'node-a', address: '10.0.0.1:7410', mode: 'ReadWrite' },
        { node: 'node-b', address: '10.0.0.2:7410', mode: 'ReadWrite' },
      ],
      engines: [{ node: 'node-a', id: 'node-a/100/x' }],
    });

    const after = await store.update((m) => ({
      ...m,
      epoch: m.epoch + 1,
      replicas: m.replicas.map((r) => (r.node === 'node-b' ? { ...r, mode: 'Failed' as const } : r)),
      engines: [...m.engines, { node: 'node-b', id: 'node-b/200/y' }],
    }));
    expect(after).toMatchObject({ epoch: 4, engines: [{ id: 'node-a/100/x' }, { id: 'node-b/200/y' }] });
    expect(after.replicas[1]?.mode).toBe('Failed');
    expect(await store.read()).toEqual(after);

    const stored = await client.get(volume.metadata.name);
    expect(stored.status).toMatchObject({
      state: 'Attached',
      robustness: 'Healthy',
      node: 'node-a',
      healthyReplicas: 2,
      conditions: [{ type: 'Ready', status: 'True', reason: 'Attached' }],
    });
  });

  it('two concurrent updaters lose no update (the conflict retry works)', async () => {
    const volume = await attachedVolume();
    // Two stores, as two engines would have: their writes race at the apiserver.
    const stores = [1, 2].map(() => new KubeMembershipStore(client, volume.metadata.name));
    let changes = 0;
    const updater = async (store: KubeMembershipStore) => {
      for (let i = 0; i < 20; i++)
        await store.update((m) => {
          changes++;
          return bump(m);
        });
    };
    await Promise.all(stores.map(updater));
    expect((await stores[0]?.read())?.epoch).toBe(3 + 40);
    // More runs of the change than stored bumps: some writes lost a race and were redone.
    expect(changes).toBeGreaterThan(40);
  });

  it('refuses a lower epoch and a third engine before writing anything', async () => {
    const volume = await attachedVolume();
    const store = new KubeMembershipStore(client, volume.metadata.name);
    await expect(store.update((m) => ({ ...m, epoch: 2 }))).rejects.toThrow(
      /epoch 2 is lower than the stored 3/,
    );
    const three: EngineStatus[] = ['a', 'b', 'c'].map((n) => ({ node: `node-${n}`, id: `node-${n}/1/z` }));
    const refused = store.update((m) => ({ ...m, engines: three }));
    await expect(refused).rejects.toThrow(MembershipError);
    await expect(refused).rejects.toThrow(/3 engines, at most 2 allowed/);
    expect((await client.get(volume.metadata.name)).metadata.resourceVersion).toBe(
      volume.metadata.resourceVersion,
    );
  });

  it('names a volume that does not exist', async () => {
    const store = new KubeMembershipStore(client, uniqueName('missing'));
    await expect(store.read()).rejects.toThrow(`volume ${store.volumeName} not found`);
  });

  const refusal = async (attempt: Promise<unknown>): Promise<string> => {
    const err = await attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApiException);
    expect((err as ApiException<unknown>).code).toBe(422);
    return String((err as ApiException<unknown>).body);
  };

  it('the CRD itself refuses three engines, duplicate engine ids and a lower epoch', async () => {
    const volume = await attachedVolume();
    const status = volume.status ?? {};
    const engines = (...ids: string[]) => ids.map((id, i) => ({ node: `node-${i}`, id }));

    expect(
      await refusal(
        client.replaceStatus({ ...volume, status: { ...status, engines: engines('x', 'y', 'z') } }),
      ),
    ).toMatch(/status\.engines: Too many/);
    expect(
      await refusal(client.replaceStatus({ ...volume, status: { ...status, engines: engines('x', 'x') } })),
    ).toMatch(/status\.engines\[1\]: Duplicate value/);
    expect(await refusal(client.replaceStatus({ ...volume, status: { ...status, epoch: 2 } }))).toMatch(
      /the epoch can grow but never decrease/,
    );
    expect(
      await refusal(
        client.replaceStatus({ ...volume, status: { ...status, engines: [{ node: 'n', id: '' }] } }),
      ),
    ).toMatch(/status\.engines\[0\]\.id/);
  });

  it('a replica without an address is accepted by the CRD but refused by the store', async () => {
    const volume = await attachedVolume();
    await client.replaceStatus({
      ...volume,
      status: { ...volume.status, replicas: [{ node: 'node-c', mode: 'WriteOnly' }] },
    });
    const store = new KubeMembershipStore(client, volume.metadata.name);
    await expect(store.read()).rejects.toThrow(
      `volume ${volume.metadata.name}: replica on node node-c has no address`,
    );
  });
});
