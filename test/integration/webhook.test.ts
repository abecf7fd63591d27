import { connect } from 'node:tls';
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  StorageV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import { installCrds } from '../../lib/kube/manifests.js';
import { freePort } from '../../lib/ports.js';
import { type RunningWebhook, runWebhook } from '../../webhook/run.js';
import { eventually, testKubeConfig, uniqueName } from '../harness/cluster.js';
import { registerWebhookConfigurations } from '../harness/webhook-registration.js';

/**
 * The admission webhook behind the real kube-apiserver: the manifests'
 * configurations are registered (pointed at a loopback URL), the webhook
 * publishes its CA into them, and objects are created through the API.
 * Serving certificates live 6 s here, so they renew every few seconds while
 * the tests run.
 */
const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const storage = kc.makeApiClient(StorageV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const suffix = uniqueName('wh');
const namespace = suffix;

let webhook: RunningWebhook;
let registration: Awaited<ReturnType<typeof registerWebhookConfigurations>>;

/** The error body of a refused create, or undefined when it was admitted. */
async function refusal(
  create: () => Promise<unknown>,
): Promise<{ code: number; message: string } | undefined> {
  try {
    await create();
    return undefined;
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    // The body is a Status object; its message is what kubectl would print.
    const status = JSON.parse(String(err.body)) as { message?: string };
    return { code: err.code, message: status.message ?? String(err.body) };
  }
}

const className = (name: string) => `${suffix}-${name}`;
async function createClass(name: string, parameters: Record<string, string>, extra: object = {}) {
  return storage.createStorageClass({
    body: { metadata: { name: className(name) }, provisioner: 'csi.tandem.dev', parameters, ...extra },
  });
}
async function createClaim(
  name: string,
  storageClass: string,
  accessMode: string,
  volumeMode: 'Filesystem' | 'Block',
) {
  return core.createNamespacedPersistentVolumeClaim({
    namespace,
    body: {
      metadata: { name },
      spec: {
        storageClassName: className(storageClass),
        accessModes: [accessMode],
        volumeMode,
        resources: { requests: { storage: '1Gi' } },
      },
    },
  });
}
function vmPod(name: string, claim: string, labels: Record<string, string>): V1Pod {
  return {
    metadata: { name, labels },
    spec: {
      containers: [{ name: 'compute', image: 'virt-launcher:test' }],
      volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: claim } }],
    },
  };
}

beforeAll(async () => {
  const port = await freePort();
  registration = await registerWebhookConfigurations(kc, `https://127.0.0.1:${port}`, suffix);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await core.createNamespace({ body: { metadata: { name: 'tandem-system' } } }).catch(() => undefined);
  webhook = await runWebhook({
    kc,
    host: '127.0.0.1',
    port,
    namespace: 'tandem-system',
    serviceName: 'tandem-webhook',
    secretName: `${suffix}-tls`,
    validatingConfiguration: registration.names.validating,
    mutatingConfiguration: registration.names.mutating,
    ipAddresses: ['127.0.0.1'],
    servingValidForMs: 6_000,
    certificateCheckIntervalMs: 250,
  });
  await eventually(() => (webhook.view.ready ? true : undefined), 30_000);
});

afterAll(async () => {
  await registration?.remove();
  await webhook?.stop();
  await core.deleteNamespace({ name: namespace }).catch(() => undefined);
});

describe('registration', () => {
  it('publishes its CA into both webhook configurations', async () => {
    const api = kc.makeApiClient(AdmissionregistrationV1Api);
    const expected = Buffer.from(webhook.certificates.caBundlePem).toString('base64');
    const validating = await api.readValidatingWebhookConfiguration({ name: registration.names.validating });
    const mutating = await api.readMutatingWebhookConfiguration({ name: registration.names.mutating });
    for (const w of [...(validating.webhooks ?? []), ...(mutating.webhooks ?? [])])
      expect(w.clientConfig.caBundle).toBe(expected);
  });
});

describe('StorageClasses', () => {
  it('refuses bad parameters and unknown keys, naming each problem', async () => {
    const refused = await refusal(() =>
      createClass('bad', { numberOfReplicas: '9', numberOfReplica: '3', fsType: 'btrfs' }),
    );
    expect(refused?.code).toBe(422);
    expect(refused?.message).toMatch(/numberOfReplicas/);
    expect(refused?.message).toMatch(/numberOfReplica\b.*did you mean/);
    expect(refused?.message).toMatch(/btrfs/);
  });

  it('refuses nfsOptions with hard and NFSv3', async () => {
    const refused = await refusal(() => createClass('nfs', { nfsOptions: 'vers=3,hard' }));
    expect(refused?.code).toBe(422);
    expect(refused?.message).toMatch(/vers/);
    expect(refused?.message).toMatch(/hard/);
  });

  it('refuses allowedTopologies on a key the driver does not report', async () => {
    const refused = await refusal(() =>
      createClass(
        'topo',
        {},
        { allowedTopologies: [{ matchLabelExpressions: [{ key: 'zone', values: ['a'] }] }] },
      ),
    );
    expect(refused?.message).toMatch(/topology\.csi\.tandem\.dev\/node/);
  });

  it('admits a good class with every default written out (mutation)', async () => {
    const created = await createClass('rwo', { numberOfReplicas: '2' });
    expect(created.parameters).toMatchObject({
      numberOfReplicas: '2',
      migratable: 'false',
      fsType: 'ext4',
      nfsOptions: 'vers=4.1,noresvport,softerr,timeo=600,retrans=5',
    });
    expect(created.parameters?.staleReplicaTimeout).toEqual(expect.any(String));
    const migratable = await createClass('migratable', { migratable: 'true' });
    expect(migratable.parameters?.migratable).toBe('true');
    expect(migratable.parameters?.nfsOptions).toBeUndefined();
  });
});

describe('PersistentVolumeClaims (the volume kinds table)', () => {
  const cases: [string, 'rwo' | 'migratable', string, 'Filesystem' | 'Block', RegExp | undefined][] = [
    ['RWO Filesystem', 'rwo', 'ReadWriteOnce', 'Filesystem', undefined],
    ['RWOP Block', 'rwo', 'ReadWriteOncePod', 'Block', undefined],
    ['RWX Filesystem (NFS)', 'rwo', 'ReadWriteMany', 'Filesystem', undefined],
    ['RWX Block on a migratable class', 'migratable', 'ReadWriteMany', 'Block', undefined],
    [
      'RWX Block without migratable',
      'rwo',
      'ReadWriteMany',
      'Block',
      /needs a StorageClass with migratable: "true"/,
    ],
    [
      'RWO Block on a migratable class',
      'migratable',
      'ReadWriteOnce',
      'Block',
      /migratable class serves only ReadWriteMany \+ Block/,
    ],
    [
      'RWX Filesystem on a migratable class',
      'migratable',
      'ReadWriteMany',
      'Filesystem',
      /served over NFS and cannot be migratable/,
    ],
    ['ReadOnlyMany', 'rwo', 'ReadOnlyMany', 'Filesystem', /does not serve access mode ReadOnlyMany/],
  ];
  it.each(cases)('%s', async (_what, storageClass, mode, volumeMode, message) => {
    const refused = await refusal(() => createClaim(uniqueName('claim'), storageClass, mode, volumeMode));
    if (message === undefined) expect(refused).toBeUndefined();
    else {
      expect(refused?.code).toBe(422);
      expect(refused?.message).toMatch(message);
    }
  });
});

describe('Pods on a migratable volume', () => {
  const claim = 'vm-disk';
  beforeAll(async () => {
    await createClaim(claim, 'migratable', 'ReadWriteMany', 'Block');
  });

  it('refuses a pod that is not a virt-launcher pod', async () => {
    const refused = await refusal(() =>
      core.createNamespacedPod({ namespace, body: vmPod('plain', claim, { app: 'db' }) }),
    );
    expect(refused?.code).toBe(403);
    expect(refused?.message).toMatch(/vm\.kubevirt\.io\/name|virt-launcher/);
  });

  it('admits the source and target pods of one VM, refuses another VM and a third pod', async () => {
    const labels = (vm: string, uid: string) => ({
      'kubevirt.io': 'virt-launcher',
      'vm.kubevirt.io/name': vm,
      'kubevirt.io/created-by': uid,
    });
    await core.createNamespacedPod({
      namespace,
      body: vmPod('launcher-source', claim, labels('vm1', 'uid-1')),
    });
    const other = await refusal(() =>
      core.createNamespacedPod({ namespace, body: vmPod('launcher-other', claim, labels('vm2', 'uid-2')) }),
    );
    expect(other?.code).toBe(403);
    expect(other?.message).toMatch(/launcher-source/);
    await core.createNamespacedPod({
      namespace,
      body: vmPod('launcher-target', claim, labels('vm1', 'uid-1')),
    });
    const third = await refusal(() =>
      core.createNamespacedPod({ namespace, body: vmPod('launcher-third', claim, labels('vm1', 'uid-1')) }),
    );
    expect(third?.code).toBe(403);
    expect(third?.message).toMatch(/two/);
  });

  it('does not look at pods whose claims are not migratable Tandem volumes', async () => {
    await createClaim('plain-disk', 'rwo', 'ReadWriteOnce', 'Filesystem');
    await core.createNamespacedPod({ namespace, body: vmPod('web', 'plain-disk', { app: 'web' }) });
  });
});

describe('KubeVirt VirtualMachines', () => {
  beforeAll(async () => {
    await installCrds(kc, new URL('../../lab/kubevirt', import.meta.url).pathname);
    await createClaim('rwo-disk', 'rwo', 'ReadWriteOnce', 'Block');
    await createClaim('migratable-disk', 'migratable', 'ReadWriteMany', 'Block');
  });
  const vm = (name: string, claim: string, evictionStrategy: string) => ({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name },
    spec: {
      runStrategy: 'Always',
      template: {
        spec: {
          evictionStrategy,
          domain: { devices: { disks: [{ name: 'disk', disk: { bus: 'virtio' } }] } },
          volumes: [{ name: 'disk', persistentVolumeClaim: { claimName: claim } }],
        },
      },
    },
  });
  const createVm = (body: object) =>
    custom.createNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace,
      plural: 'virtualmachines',
      body,
    });

  it('refuses live migration on eviction with a non-migratable Tandem claim, naming the claim and the fix', async () => {
    const refused = await refusal(() => createVm(vm('vm-rwo', 'rwo-disk', 'LiveMigrate')));
    expect(refused?.code).toBe(403);
    expect(refused?.message).toMatch(/rwo-disk/);
    expect(refused?.message).toMatch(/ReadWriteMany/);
  });

  it('admits the same VM without live migration, and a live-migrating VM on a migratable claim', async () => {
    await createVm(vm('vm-none', 'rwo-disk', 'None'));
    await createVm(vm('vm-live', 'migratable-disk', 'LiveMigrate'));
  });
});

describe('certificate renewal', () => {
  it('renews the serving certificate while requests flow, and no request fails', async () => {
    const serials = new Set<string>();
    const failures: string[] = [];
    let requests = 0;
    const deadline = Date.now() + 9_000;
    while (Date.now() < deadline) {
      const name = uniqueName('renew');
      // Each class goes through the mutating and the validating webhook over TLS.
      await createClass(name, {})
        .then(() => storage.deleteStorageClass({ name: className(name) }))
        .catch((err: unknown) => failures.push(String(err instanceof ApiException ? err.body : err)));
      requests++;
      serials.add(await servingSerial(webhook.port));
    }
    expect(failures).toEqual([]);
    expect(requests).toBeGreaterThan(20);
    expect(webhook.certificates.renewals).toBeGreaterThanOrEqual(2);
    expect(serials.size).toBeGreaterThanOrEqual(2);
  });
});

function servingSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.on('error', reject);
  });
}
