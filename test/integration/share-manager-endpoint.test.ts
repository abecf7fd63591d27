/**
 * The share manager's cluster side against the real apiserver: the EndpointSlice of the volume's
 * Service (written once serving, emptied on a clean stop, taken over by the next share manager)
 * and the heartbeat Lease renewed at the failover mode's pace. The address is one of the
 * project's range: the apiserver refuses loopback addresses in EndpointSlices. And the Pod and
 * Service the controller will create for a share manager, checked by the apiserver's own
 * validation (server-side dry run: there is no kubelet in this suite to run the Pod).
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { CoordinationV1Api, CoreV1Api, DiscoveryV1Api } from '@kubernetes/client-node';
import { shareManagerPod, shareManagerService } from '../../driver/controller/share-manager-objects.js';
import { heartbeatTimings, KubeShareEndpoint } from '../../driver/share-manager/endpoint.js';
import { shareManagerName } from '../../driver/share-manager/names.js';
import { KubeLeaseApi } from '../../lib/kube/leader-election.js';
import { silentLogger } from '../../lib/log.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';

const kc = testKubeConfig();
const namespace = uniqueName('share-endpoint');
const volumeId = 'pvc-share-endpoint';
const name = shareManagerName(volumeId);

const endpoint = (nodeName: string, identity: string, fast = true) =>
  new KubeShareEndpoint({
    kc,
    leases: new KubeLeaseApi(kc),
    namespace,
    volumeId,
    nodeName,
    identity,
    timings: { ...heartbeatTimings(fast), renewMs: 500 },
    logger: silentLogger(),
  });

async function slice() {
  const read = await kc.makeApiClient(DiscoveryV1Api).readNamespacedEndpointSlice({ namespace, name });
  return {
    service: read.metadata?.labels?.['kubernetes.io/service-name'],
    managedBy: read.metadata?.labels?.['endpointslice.kubernetes.io/managed-by'],
    ports: read.ports?.map((p) => `${p.name}/${p.protocol}/${p.port}`),
    ready: (read.endpoints ?? [])
      .filter((e) => e.conditions?.ready)
      .map((e) => `${e.nodeName}:${e.addresses.join(',')}`),
  };
}

const lease = () => kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ namespace, name });

beforeAll(async () => {
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await kc
    .makeApiClient(CoreV1Api)
    .deleteNamespace({ name: namespace })
    .catch(() => undefined);
});

test('published once serving, renewed, withdrawn on a clean stop, taken over by the next share manager', async () => {
  const first = endpoint('node-1', 'share-manager-a');
  await first.publish({ address: '198.18.0.11', port: 2049 });
  expect(await slice()).toEqual({
    service: name,
    managedBy: 'share-manager.tandem.dev',
    ports: ['nfs/TCP/2049'],
    ready: ['node-1:198.18.0.11'],
  });
  const taken = await lease();
  expect(taken.spec).toMatchObject({ holderIdentity: 'share-manager-a', leaseDurationSeconds: 6 });
  // The heartbeat moves on its own.
  const renewedAt = new Date(String(taken.spec?.renewTime)).getTime();
  await eventually(async () => {
    const now = await lease();
    return new Date(String(now.spec?.renewTime)).getTime() > renewedAt ? true : undefined;
  }, 5_000);

  await first.withdraw();
  expect((await slice()).ready).toEqual([]);

  // A successor elsewhere (default timings this time) takes both over.
  const second = endpoint('node-2', 'share-manager-b', false);
  await second.publish({ address: '198.18.0.12', port: 2049 });
  expect((await slice()).ready).toEqual(['node-2:198.18.0.12']);
  expect((await lease()).spec).toMatchObject({ holderIdentity: 'share-manager-b', leaseDurationSeconds: 30 });
  await second.withdraw();
});

test("the share manager's Pod and Service pass the apiserver's validation", async () => {
  const core = kc.makeApiClient(CoreV1Api);
  const pod = shareManagerPod(
    volumeId,
    {
      nfsOptions: 'vers=4.1,noresvport,softerr,timeo=600,retrans=5',
      fastFailover: true,
      nodeSelector: { role: 'nfs' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'nfs', effect: 'NoSchedule' }],
      nodes: ['node-2'],
    },
    {
      namespace,
      image: 'tandem:0.1.0',
      serviceAccountName: 'default',
      fsType: 'ext4',
      defaults: { nodeSelector: {}, tolerations: [] },
    },
  );
  const created = await core.createNamespacedPod({ namespace, body: pod, dryRun: 'All' });
  expect(created.spec?.restartPolicy).toBe('Never');
  const service = await core.createNamespacedService({
    namespace,
    body: shareManagerService(volumeId, namespace),
    dryRun: 'All',
  });
  expect(service.spec?.clusterIP).toBeDefined();
});
