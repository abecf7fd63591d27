import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RbacAuthorizationV1Api, VersionApi } from '@kubernetes/client-node';
import { type ToolName, toolPath } from '../../lab/tools.js';
import { run } from '../../lib/exec.js';
import { packageRoot } from '../../lib/paths.js';
import { testKubeConfig, uniqueName } from '../harness/cluster.js';

/** The version a wrapper module pins for a Go module, read from its go.mod. */
function pinned(wrapper: string, module: string): string {
  const goMod = readFileSync(join(packageRoot(), 'test', 'tools', wrapper, 'go.mod'), 'utf8');
  const version = new RegExp(`^\\s*(?:require\\s+)?${module.replaceAll('.', '\\.')} (v\\S+)`, 'm').exec(
    goMod,
  )?.[1];
  if (!version) throw new Error(`${module} not pinned in test/tools/${wrapper}/go.mod`);
  return version;
}

describe('the test control plane', () => {
  const kc = testKubeConfig();

  it('is a real kube-apiserver of the pinned Kubernetes version', async () => {
    const info = await kc.makeApiClient(VersionApi).getCode();
    expect(info.gitVersion).toBe(pinned('kube', 'k8s.io/kubernetes'));
    expect(info.gitVersion).toMatch(/^v1\.35\./);
  });

  it('gives the generated admin certificate system:masters rights', async () => {
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    const name = uniqueName('tandem-test');
    await rbac.createClusterRole({
      body: {
        metadata: { name },
        rules: [{ apiGroups: ['tandem.dev'], resources: ['volumes'], verbs: ['get'] }],
      },
    });
    await rbac.deleteClusterRole({ name });
  });

  it('refuses a request without a client certificate', async () => {
    const server = kc.getCurrentCluster()?.server ?? '';
    const ca = Buffer.from(kc.getCurrentCluster()?.caData ?? '', 'base64').toString();
    const { request } = await import('node:https');
    const status = await new Promise<number>((resolve, reject) => {
      request(`${server}/api/v1/namespaces`, { ca }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', reject)
        .end();
    });
    expect([401, 403]).toContain(status);
  });
});

describe('the Go-built tools', () => {
  const cases: [ToolName, string[], string, string][] = [
    ['etcd', ['--version'], 'etcd', 'go.etcd.io/etcd/server/v3'],
    ['kubectl', ['version', '--client'], 'kube', 'k8s.io/kubernetes'],
    ['csi-sanity', ['--version'], 'csi-sanity', 'github.com/kubernetes-csi/csi-test/v5'],
    [
      'csi-provisioner',
      ['--version'],
      'csi-provisioner',
      'github.com/kubernetes-csi/external-provisioner/v6',
    ],
    ['csi-attacher', ['--version'], 'csi-attacher', 'github.com/kubernetes-csi/external-attacher/v4'],
    ['csi-resizer', ['--version'], 'csi-resizer', 'github.com/kubernetes-csi/external-resizer/v2'],
  ];
  it.each(cases)('%s runs and reports the pinned version', async (tool, args, wrapper, module) => {
    const { stdout } = await run(toolPath(tool), args, { timeoutMs: 10_000 });
    expect(stdout).toContain(pinned(wrapper, module).replace(/^v(?=3\.)/, ''));
  });
});
