/**
 * manifests/driver/share-manager-rbac.yaml on the real kube-apiserver: the share manager's
 * ServiceAccount may write its volume's EndpointSlice and heartbeat Lease in tandem-system and
 * nothing on the forbidden list, and the controller may make share managers there only, as `kubectl auth can-i` sees it (the same tables
 * cli/manifests.test.ts checks against the YAML). The RBAC objects stay applied, as in
 * migrator-rbac.test.ts: the test cluster is thrown away after the run.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { CoreV1Api } from '@kubernetes/client-node';
import { applyObjects, readManifests } from '../../lib/kube/manifests.js';
import { manifestsDir } from '../../lib/paths.js';
import { answersAs, canI } from '../harness/can-i.js';
import { eventually, testKubeConfig } from '../harness/cluster.js';
import {
  CONTROLLER_ACCOUNT,
  CONTROLLER_SHARE_FORBIDDEN,
  CONTROLLER_SHARE_RIGHTS,
  NAMESPACE,
  rightCases,
  SHARE_MANAGER_ACCOUNT,
  SHARE_MANAGER_FORBIDDEN,
  SHARE_MANAGER_RIGHTS,
} from '../harness/driver-manifests.js';

const kc = testKubeConfig();
let cacheDir = '';

beforeAll(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'tandem-kubectl-cache-'));
  const exists = await kc
    .makeApiClient(CoreV1Api)
    .readNamespace({ name: NAMESPACE })
    .then(
      () => true,
      () => false,
    );
  if (!exists) await applyObjects(kc, await readManifests(join(manifestsDir(), 'base')));
  const objects = await readManifests(join(manifestsDir(), 'driver'));
  await applyObjects(
    kc,
    objects.filter((o) => [SHARE_MANAGER_ACCOUNT, CONTROLLER_ACCOUNT].includes(o.metadata?.name ?? '')),
  );
  // The RBAC authorizer reads roles from an informer: wait until it has the new ones.
  const [probe] = rightCases(SHARE_MANAGER_RIGHTS);
  if (!probe) throw new Error('no share-manager rights to check');
  await eventually(
    async () => ((await canI(SHARE_MANAGER_ACCOUNT, probe, cacheDir)) === 'yes' ? true : undefined),
    15_000,
  );
}, 60_000);

afterAll(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

test('allows every call the share manager makes', async () => {
  const cases = rightCases(SHARE_MANAGER_RIGHTS);
  expect(await answersAs(SHARE_MANAGER_ACCOUNT, cases, cacheDir)).toEqual(
    cases.map((c) => `${c.label}: yes`),
  );
}, 120_000);

test('refuses everything on the forbidden list', async () => {
  const cases = rightCases(SHARE_MANAGER_FORBIDDEN);
  expect(await answersAs(SHARE_MANAGER_ACCOUNT, cases, cacheDir)).toEqual(cases.map((c) => `${c.label}: no`));
}, 120_000);

test('allows the controller every call it makes for share managers, in tandem-system only', async () => {
  const rights = rightCases(CONTROLLER_SHARE_RIGHTS);
  const forbidden = rightCases(CONTROLLER_SHARE_FORBIDDEN);
  expect(await answersAs(CONTROLLER_ACCOUNT, rights, cacheDir)).toEqual(rights.map((c) => `${c.label}: yes`));
  expect(await answersAs(CONTROLLER_ACCOUNT, forbidden, cacheDir)).toEqual(
    forbidden.map((c) => `${c.label}: no`),
  );
}, 120_000);
