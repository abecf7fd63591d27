import type { V1ContainerStateTerminated, V1Pod } from '@kubernetes/client-node';
import { podState } from './share-cluster.js';

const failed = (terminated: V1ContainerStateTerminated): V1Pod => ({
  metadata: { name: 'share-manager-pvc-1', uid: 'u1' },
  spec: { nodeName: 'node-2', containers: [] },
  status: {
    phase: 'Failed',
    containerStatuses: [
      {
        name: 'share-manager',
        image: 'tandem',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { terminated },
      },
    ],
  },
});

test('a share manager that ended carries its termination message: why it could not serve, in its own words', () => {
  const state = podState(
    failed({
      exitCode: 1,
      reason: 'Error',
      message: 'NFS-Ganesha exited during start (code 2): Export Path is not a directory\n',
    }),
  );
  expect(state).toMatchObject({ phase: 'Failed', nodeName: 'node-2' });
  expect(state.exitMessage).toBe('NFS-Ganesha exited during start (code 2): Export Path is not a directory');
});

test('a long message is cut to fit an Event; without one the kubelet reason stands in (OOMKilled), never "Completed"', () => {
  expect(podState(failed({ exitCode: 1, message: 'x'.repeat(5000) })).exitMessage?.length).toBe(601);
  expect(podState(failed({ exitCode: 137, reason: 'OOMKilled' })).exitMessage).toBe('OOMKilled');
  expect(podState(failed({ exitCode: 0, reason: 'Completed' })).exitMessage).toBeUndefined();
});
