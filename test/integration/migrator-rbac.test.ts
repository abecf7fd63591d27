/**
 * manifests/migrator on the real kube-apiserver: its RBAC, applied into tandem-system, lets the
 * migrator's ServiceAccount do every call the migrator makes and nothing on the forbidden list, as
 * `kubectl auth can-i --as=system:serviceaccount:tandem-system:tandem-migrator` sees it (the
 * apiserver's own RBAC authorizer, resourceNames and namespaces included). The rights are the
 * same tables cli/manifests.test.ts checks against the YAML. The Deployment and PDB go through the
 * apiserver's validation as a dry run.
 *
 * The RBAC objects stay applied: the test cluster is thrown away after the run, and applying is
 * idempotent, so another test applying the same manifests is not disturbed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type KubernetesObject, KubernetesObjectApi } from '@kubernetes/client-node';
import { applyObjects, installCrds, readManifests } from '../../lib/kube/manifests.js';
import { manifestsDir } from '../../lib/paths.js';
import { answersAs, canI as canIAs } from '../harness/can-i.js';
import { eventually, testKubeConfig } from '../harness/cluster.js';
import {
  MIGRATOR_ACCOUNT,
  MIGRATOR_FORBIDDEN,
  MIGRATOR_RIGHTS,
  NAMESPACE,
  type RightCase,
  rightCases,
} from '../harness/driver-manifests.js';

describe('manifests/migrator RBAC on the real kube-apiserver', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  let cacheDir = '';
  let objects: KubernetesObject[] = [];

  const canI = (c: RightCase) => canIAs(MIGRATOR_ACCOUNT, c, cacheDir);
  const answers = (cases: RightCase[]) => answersAs(MIGRATOR_ACCOUNT, cases, cacheDir);

  beforeAll(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'tandem-kubectl-cache-'));
    objects = await readManifests(join(manifestsDir(), 'migrator'));
    // The namespace first (when no other test made it): the Role and RoleBinding live in it.
    const exists = await core.readNamespace({ name: NAMESPACE }).then(
      () => true,
      () => false,
    );
    if (!exists) await applyObjects(kc, await readManifests(join(manifestsDir(), 'base')));
    // The stand-ins for KubeVirt's CRDs (other test files install them too): kubectl resolves
    // resource names through discovery, so the kubevirt.io rights can only be asked about while
    // the apiserver serves them, as in a cluster with KubeVirt.
    await installCrds(kc, new URL('../../lab/kubevirt', import.meta.url).pathname);
    const rbacKinds = new Set(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']);
    await applyObjects(
      kc,
      objects.filter((o) => rbacKinds.has(o.kind ?? '')),
    );
    // The RBAC authorizer reads roles from an informer: wait until it has the new ones.
    const [probe] = rightCases(MIGRATOR_RIGHTS);
    if (!probe) throw new Error('no migrator rights to check');
    await eventually(async () => ((await canI(probe)) === 'yes' ? true : undefined), 15_000);
  }, 60_000);
  afterAll(async () => {
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('allows every call the migrator makes', async () => {
    const cases = rightCases(MIGRATOR_RIGHTS);
    expect(await answers(cases)).toEqual(cases.map((c) => `${c.label}: yes`));
  }, 120_000);

  it('refuses everything on the forbidden list', async () => {
    const cases = rightCases(MIGRATOR_FORBIDDEN);
    expect(await answers(cases)).toEqual(cases.map((c) => `${c.label}: no`));
  }, 120_000);

  it('accepts the Deployment and the PodDisruptionBudget (dry run)', async () => {
    const client = KubernetesObjectApi.makeApiClient(kc);
    const refused: string[] = [];
    for (const object of objects.filter((o) =>
      ['Deployment', 'PodDisruptionBudget'].includes(o.kind ?? ''),
    )) {
      try {
        await client.create(object, undefined, 'All');
      } catch (err) {
        refused.push(
          `${object.kind}/${object.metadata?.name}: ${String((err as { body?: unknown }).body ?? err)}`,
        );
      }
    }
    expect(refused).toEqual([]);
  });
});
