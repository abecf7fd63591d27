import { shareManagerName } from '../share-manager/names.js';
import { mergedTolerations, shareManagerPod, shareManagerService } from './share-manager-objects.js';

const options = {
  namespace: 'tandem-system',
  image: 'tandem:0.1.0',
  serviceAccountName: 'tandem-share-manager',
  fsType: 'ext4' as const,
  defaults: {
    nodeSelector: { 'kubernetes.io/os': 'linux', role: 'any' },
    tolerations: [{ key: 'storage', operator: 'Exists' as const, effect: 'NoSchedule' as const }],
  },
};

describe('share-manager Pod', () => {
  test('placement: the class selector wins over the defaults, tolerations of both, allowedTopologies as required affinity', () => {
    const pod = shareManagerPod(
      'pvc-1',
      {
        nfsOptions: 'vers=4.1',
        fastFailover: false,
        nodeSelector: { role: 'nfs' },
        tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'nfs', effect: 'NoExecute' }],
        nodes: ['node-2', 'node-3'],
      },
      options,
    );
    expect(pod.metadata?.name).toBe('share-manager-pvc-1');
    expect(pod.spec?.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', role: 'nfs' });
    expect(pod.spec?.tolerations).toEqual([
      { key: 'dedicated', operator: 'Equal', value: 'nfs', effect: 'NoExecute' },
      { key: 'storage', operator: 'Exists', effect: 'NoSchedule' },
    ]);
    expect(pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution).toEqual({
      nodeSelectorTerms: [
        {
          matchExpressions: [
            { key: 'topology.csi.tandem.dev/node', operator: 'In', values: ['node-2', 'node-3'] },
          ],
        },
      ],
    });
    expect(pod.spec?.restartPolicy).toBe('Never');
  });

  test('no allowedTopologies: no affinity; fast failover and the filesystem reach the share manager', () => {
    const pod = shareManagerPod(
      'pvc-2',
      { nfsOptions: 'vers=4.1', fastFailover: true },
      { ...options, fsType: 'xfs' },
    );
    expect(pod.spec?.affinity).toBeUndefined();
    const args = pod.spec?.containers[0]?.args ?? [];
    expect(args).toEqual(expect.arrayContaining(['share-manager', '--volume', 'pvc-2', '--fast-failover']));
    expect(args.join(' ')).toMatch(/--fs-type xfs/);
    const env = Object.fromEntries(
      (pod.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]),
    );
    expect(env).toMatchObject({
      NODE_NAME: 'spec.nodeName',
      POD_IP: 'status.podIP',
      POD_NAME: 'metadata.name',
    });
  });

  test("its mounts live in the node's mount namespace too (Bidirectional state folder), so a killed Pod cannot deadlock on its own FUSE", () => {
    const pod = shareManagerPod('pvc-3', { nfsOptions: 'vers=4.1', fastFailover: false }, options);
    const container = pod.spec?.containers[0];
    const state = container?.volumeMounts?.find((m) => m.name === 'state');
    expect(state).toMatchObject({
      mountPath: '/var/lib/tandem/share-manager',
      mountPropagation: 'Bidirectional',
    });
    // The kubelet refuses Bidirectional propagation in an unprivileged container.
    expect(container?.securityContext?.privileged).toBe(true);
    expect(container?.args?.join(' ')).toMatch(/--state-dir \/var\/lib\/tandem\/share-manager/);
  });

  test('a replacement avoids the nodes the controller knows are lost, within allowedTopologies or without', () => {
    const within = shareManagerPod(
      'pvc-4',
      { nfsOptions: 'vers=4.1', fastFailover: true, nodes: ['node-2', 'node-3'] },
      { ...options, avoidNodes: ['node-2'] },
    );
    expect(within.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution).toEqual({
      nodeSelectorTerms: [
        {
          matchExpressions: [
            { key: 'topology.csi.tandem.dev/node', operator: 'In', values: ['node-2', 'node-3'] },
            { key: 'topology.csi.tandem.dev/node', operator: 'NotIn', values: ['node-2'] },
          ],
        },
      ],
    });
    const anywhere = shareManagerPod(
      'pvc-4',
      { nfsOptions: 'vers=4.1', fastFailover: true },
      {
        ...options,
        avoidNodes: ['node-1'],
      },
    );
    expect(anywhere.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution).toEqual({
      nodeSelectorTerms: [
        {
          matchExpressions: [{ key: 'topology.csi.tandem.dev/node', operator: 'NotIn', values: ['node-1'] }],
        },
      ],
    });
  });

  test('the same toleration from class and defaults appears once', () => {
    const t = { key: 'a', operator: 'Exists' as const, effect: 'NoSchedule' as const };
    expect(mergedTolerations([t], [t])).toEqual([{ key: 'a', operator: 'Exists', effect: 'NoSchedule' }]);
  });
});

describe('share-manager names', () => {
  test('a volume id that is no DNS-1035 label, or too long, is hashed into one', () => {
    expect(shareManagerName('pvc-abc')).toBe('share-manager-pvc-abc');
    const long = shareManagerName(`csi-${'a'.repeat(60)}`);
    expect(long).toMatch(/^share-manager-[0-9a-f]{40}$/);
    expect(long.length).toBeLessThanOrEqual(63);
    expect(shareManagerName('Upper.Case')).toMatch(/^share-manager-[0-9a-f]{40}$/);
    expect(shareManagerName('x')).not.toBe(shareManagerName('y'));
  });

  test("the Service has no selector: its one EndpointSlice is the share manager's", () => {
    const service = shareManagerService('pvc-1', 'tandem-system');
    expect(service.metadata?.name).toBe('share-manager-pvc-1');
    expect(service.spec?.selector).toBeUndefined();
    expect(service.spec?.ports).toEqual([{ name: 'nfs', port: 2049, targetPort: 2049, protocol: 'TCP' }]);
  });
});
