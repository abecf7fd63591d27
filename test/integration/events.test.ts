import { CoreV1Api, EventsV1Api } from '@kubernetes/client-node';
import { EventRecorder } from '../../lib/kube/events.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';

describe('EventRecorder on the real kube-apiserver', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const eventsApi = kc.makeApiClient(EventsV1Api);
  const namespace = uniqueName('events');
  const recorder = new EventRecorder({ kc, reportingInstance: 'controller-test', seriesUpdateIntervalMs: 0 });

  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: namespace } } });
  });
  afterAll(async () => {
    await recorder.flush();
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  });

  /** What `kubectl describe pvc` lists: core/v1 Events selected by the involved object. */
  const coreEventsAbout = async (ns: string, kind: string, name: string) =>
    (
      await core.listNamespacedEvent({
        namespace: ns,
        fieldSelector: `involvedObject.kind=${kind},involvedObject.name=${name}`,
      })
    ).items;

  it('records an event about a PVC that shows up with its reason, type and object, and counts a repeat', async () => {
    const claim = await core.createNamespacedPersistentVolumeClaim({
      namespace,
      body: {
        metadata: { name: uniqueName('claim') },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      },
    });
    const name = claim.metadata?.name ?? '';
    const message = `no node has room for 3 replicas of ${name}`;
    recorder.warning(
      { ...claim, apiVersion: 'v1', kind: 'PersistentVolumeClaim' },
      'ProvisioningFailed',
      message,
      'Provision',
    );
    await recorder.flush();

    const [first] = await eventually(async () => {
      const items = await coreEventsAbout(namespace, 'PersistentVolumeClaim', name);
      return items.length > 0 ? items : undefined;
    });
    expect(first).toMatchObject({
      type: 'Warning',
      reason: 'ProvisioningFailed',
      message,
      action: 'Provision',
      reportingComponent: 'csi.tandem.dev',
      reportingInstance: 'controller-test',
      involvedObject: {
        kind: 'PersistentVolumeClaim',
        name,
        namespace,
        uid: claim.metadata?.uid,
      },
    });

    recorder.warning(
      { ...claim, apiVersion: 'v1', kind: 'PersistentVolumeClaim' },
      'ProvisioningFailed',
      message,
      'Provision',
    );
    await recorder.flush();
    const items = await coreEventsAbout(namespace, 'PersistentVolumeClaim', name);
    expect(items).toHaveLength(1);
    expect(items[0]?.series?.count).toBe(2);
    // The same object through events.k8s.io/v1.
    const viaEventsApi = await eventsApi.readNamespacedEvent({
      namespace,
      name: items[0]?.metadata.name ?? '',
    });
    expect(viaEventsApi.series?.count).toBe(2);
    expect(viaEventsApi.regarding?.uid).toBe(claim.metadata?.uid);
    expect(viaEventsApi.note).toBe(message);

    // A different message is a separate Event.
    recorder.normal({ ...claim, apiVersion: 'v1', kind: 'PersistentVolumeClaim' }, 'Provisioned', 'created');
    await recorder.flush();
    const after = await coreEventsAbout(namespace, 'PersistentVolumeClaim', name);
    expect(after.map((e) => `${e.type}/${e.reason}`).sort()).toEqual([
      'Normal/Provisioned',
      'Warning/ProvisioningFailed',
    ]);
  });

  it('accepts a message longer than the API allows, truncated', async () => {
    const name = uniqueName('claim');
    recorder.warning(
      { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name, namespace },
      'AttachFailed',
      'x'.repeat(5000),
    );
    await recorder.flush();
    const [event] = await coreEventsAbout(namespace, 'PersistentVolumeClaim', name);
    expect(event?.message?.length).toBeLessThanOrEqual(1024);
    expect(event?.message?.startsWith('xxxx')).toBe(true);
  });

  it('writes events about a cluster-scoped Volume to the default namespace', async () => {
    const name = uniqueName('pvc');
    recorder.normal(
      { apiVersion: 'tandem.dev/v1alpha1', kind: 'Volume', metadata: { name, uid: 'volume-uid' } },
      'Attached',
      'engine running on node-a',
    );
    await recorder.flush();
    const [event] = await coreEventsAbout('default', 'Volume', name);
    expect(event).toMatchObject({
      type: 'Normal',
      reason: 'Attached',
      involvedObject: { apiVersion: 'tandem.dev/v1alpha1', kind: 'Volume', name, uid: 'volume-uid' },
    });
    await core.deleteNamespacedEvent({ namespace: 'default', name: event?.metadata.name ?? '' });
  });
});
