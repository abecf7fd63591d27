import { newVolume, type ReplicaStatus, type Volume } from '../../lib/api/volume.js';
import { MemoryControllerCluster } from '../../test/harness/memory-controller-cluster.js';
import {
  eventSubject,
  LostNodeReporter,
  PVC_NAME_ANNOTATION,
  PVC_NAMESPACE_ANNOTATION,
  replicaTransitions,
} from './volume-events.js';

function volume(replicas: ReplicaStatus[], claim = true): Volume {
  const v = newVolume('pvc-9', {
    sizeBytes: 1 << 30,
    numberOfReplicas: 3,
    accessMode: 'ReadWriteOnce',
    volumeMode: 'Block',
  });
  if (claim) v.metadata.annotations = { [PVC_NAME_ANNOTATION]: 'data', [PVC_NAMESPACE_ANNOTATION]: 'apps' };
  v.status = { replicas };
  return v;
}

const r = (node: string, mode: ReplicaStatus['mode']): ReplicaStatus => ({ node, mode });

test('events go to the claim when known, else to the Volume', () => {
  expect(eventSubject(volume([]))).toEqual({
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    name: 'data',
    namespace: 'apps',
  });
  expect(eventSubject(volume([], false))).toMatchObject({ kind: 'Volume', name: 'pvc-9' });
});

test('replica transitions: failed, rebuild started, rebuild finished; nothing for no change', () => {
  const healthy = volume([r('a', 'ReadWrite'), r('b', 'ReadWrite')]);
  const failed = volume([r('a', 'ReadWrite'), r('b', 'Failed')]);
  const rebuilding = volume([r('a', 'ReadWrite'), r('b', 'WriteOnly')]);
  expect(replicaTransitions(healthy, healthy)).toEqual([]);
  expect(replicaTransitions(healthy, failed).map((e) => [e.type, e.reason])).toEqual([
    ['Warning', 'ReplicaFailed'],
  ]);
  expect(replicaTransitions(failed, rebuilding).map((e) => e.reason)).toEqual(['RebuildStarted']);
  expect(replicaTransitions(rebuilding, healthy).map((e) => e.reason)).toEqual(['RebuildFinished']);
  // A replica that was readable all along is not "finished".
  expect(replicaTransitions(undefined, healthy)).toEqual([]);
});

test('a lost node is reported once per volume while it stays lost, and again after it came back', async () => {
  const cluster = new MemoryControllerCluster();
  cluster.addNode('a');
  cluster.addNode('b');
  const recorded: string[] = [];
  const reporter = new LostNodeReporter(cluster, {
    record: (_s, d) => recorded.push(`${d.reason}:${d.message.includes('node b')}`),
  });
  const volumes = [volume([r('a', 'ReadWrite'), r('b', 'ReadWrite')])];
  await reporter.check(volumes);
  expect(recorded).toEqual([]);
  const b = cluster.nodes.find((n) => n.node === 'b');
  if (!b) throw new Error('no node b');
  b.renewedAtMs = 0;
  await reporter.check(volumes);
  await reporter.check(volumes);
  expect(recorded).toEqual(['NodeLost:true']);
  b.renewedAtMs = Date.now();
  await reporter.check(volumes);
  b.renewedAtMs = 0;
  await reporter.check(volumes);
  expect(recorded).toHaveLength(2);
});
