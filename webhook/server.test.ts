import { request as httpsRequest } from 'node:https';
import { gzipSync } from 'node:zlib';
import { createRegistry } from '../lib/metrics.js';
import { CertificateAuthority } from '../lib/pki.js';
import { seededRandom } from '../test/harness/random.js';
import { fakeClusterView } from './rules/fake-cluster-view.js';
import { startWebhookServer, type WebhookServer } from './server.js';

/** Nothing exists in this cluster: every rule falls back to "not Tandem, allow". */
const emptyView = fakeClusterView({});

interface Reply {
  status: number;
  body: string;
}

const validReview = (uid = 'u-1') => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid,
    kind: { group: 'storage.k8s.io', version: 'v1', kind: 'StorageClass' },
    operation: 'CREATE',
    object: { metadata: { name: 'sc' }, provisioner: 'example.com/other' },
  },
});

describe('webhook HTTPS endpoints under hostile input', () => {
  const ca = CertificateAuthority.create('test-ca');
  let server: WebhookServer;
  let ready = false;

  const send = (
    path: string,
    body: string | Buffer,
    contentType = 'application/json',
    method = 'POST',
    headers: Record<string, string> = {},
  ): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: server.port,
          path,
          method,
          ca: ca.certPem,
          headers: { 'content-type': contentType, ...headers },
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  beforeAll(async () => {
    server = await startWebhookServer({
      host: '127.0.0.1',
      port: 0,
      certificate: ca.issue({ commonName: 'webhook', ipAddresses: ['127.0.0.1'], usage: 'server' }),
      view: emptyView,
      registry: createRegistry('webhook-test', false),
      ready: () => ready,
    });
  });
  afterAll(async () => server.close());

  it('answers a valid review with an AdmissionReview that echoes the uid', async () => {
    const reply = await send('/validate', JSON.stringify(validReview('abc-123')));
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'abc-123', allowed: true },
    });
  });

  const malformed: [string, string | Buffer, string, number, RegExp][] = [
    ['invalid JSON', '{"apiVersion": ', 'application/json', 400, /not valid JSON/],
    ['a JSON array', '[]', 'application/json', 400, /must be a JSON object/],
    ['a JSON string', '"review"', 'application/json', 400, /not valid JSON|must be a JSON object/],
    [
      'wrong kind',
      JSON.stringify({ ...validReview(), kind: 'Review' }),
      'application/json',
      400,
      /kind must be "AdmissionReview"/,
    ],
    [
      'admission v1beta1',
      JSON.stringify({ ...validReview(), apiVersion: 'admission.k8s.io/v1beta1' }),
      'application/json',
      400,
      /admissionReviewVersions/,
    ],
    [
      'no request',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }),
      'application/json',
      400,
      /request is missing/,
    ],
    [
      'no uid',
      JSON.stringify({ ...validReview(), request: { ...validReview().request, uid: undefined } }),
      'application/json',
      400,
      /uid/,
    ],
    [
      'a numeric uid',
      JSON.stringify({ ...validReview(), request: { ...validReview().request, uid: 7 } }),
      'application/json',
      400,
      /uid/,
    ],
    [
      'an unknown operation',
      JSON.stringify({ ...validReview(), request: { ...validReview().request, operation: 'PATCH' } }),
      'application/json',
      400,
      /operation/,
    ],
    [
      'an object that is a list',
      JSON.stringify({ ...validReview(), request: { ...validReview().request, object: [1] } }),
      'application/json',
      400,
      /object must be an object/,
    ],
    [
      'an UPDATE without oldObject',
      JSON.stringify({ ...validReview(), request: { ...validReview().request, operation: 'UPDATE' } }),
      'application/json',
      400,
      /oldObject is required/,
    ],
    ['a body over the limit', Buffer.alloc(5 * 1024 * 1024, 0x20), 'application/json', 413, /larger than/],
    [
      'text/plain',
      JSON.stringify(validReview()),
      'text/plain',
      415,
      /Content-Type must be application\/json/,
    ],
    [
      'a non-UTF-8 charset',
      JSON.stringify(validReview()),
      'application/json; charset=latin-9',
      415,
      /encoding/,
    ],
  ];

  it.each(malformed)('refuses %s with a clear 4xx', async (_what, body, contentType, status, message) => {
    const reply = await send('/validate', body, contentType);
    expect(reply.status).toBe(status);
    expect(JSON.parse(reply.body).error).toMatch(message);
  });

  it('answers a gzip-encoded review too (through express, which inflates it)', async () => {
    const body = gzipSync(JSON.stringify(validReview('gz')));
    const reply = await send('/validate', body, 'application/json', 'POST', { 'content-encoding': 'gzip' });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).response).toMatchObject({ uid: 'gz', allowed: true });
  });

  it('refuses other methods and paths with 405 and 404', async () => {
    expect((await send('/validate', '', 'application/json', 'GET')).status).toBe(405);
    expect((await send('/admit', '{}')).status).toBe(404);
  });

  it('denies, with a 422 in the review, objects of the wrong shape for their kind', async () => {
    const review = validReview('shape');
    const body = {
      ...review,
      request: {
        ...review.request,
        kind: { group: '', version: 'v1', kind: 'PersistentVolumeClaim' },
        object: { spec: 'nope' },
      },
    };
    const reply = JSON.parse((await send('/validate', JSON.stringify(body))).body);
    expect(reply.response).toMatchObject({ uid: 'shape', allowed: false, status: { code: 422 } });
  });

  it('never answers 5xx to 600 random mutations of a review, and keeps serving', async () => {
    const random = seededRandom(20261122);
    const kinds = [
      { group: '', version: 'v1', kind: 'PersistentVolumeClaim' },
      { group: '', version: 'v1', kind: 'Pod' },
      { group: 'storage.k8s.io', version: 'v1', kind: 'StorageClass' },
      { group: 'kubevirt.io', version: 'v1', kind: 'VirtualMachine' },
      { group: 'tandem.dev', version: 'v1alpha1', kind: 'Volume' },
    ];
    const junk = [
      null,
      0,
      -1,
      1e308,
      '',
      'x',
      true,
      [],
      {},
      [null],
      { a: { b: [] } },
      '\u0000',
      'ReadWriteMany',
    ];
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
    const statuses = new Map<number, number>();
    for (let i = 0; i < 600; i++) {
      const review = JSON.parse(JSON.stringify(validReview(`fuzz-${i}`)));
      review.request.kind = pick(kinds);
      review.request.object = {
        spec: {
          accessModes: pick(junk),
          volumeMode: pick(junk),
          volumes: pick(junk),
          storageClassName: pick(junk),
          engines: pick(junk),
          template: pick(junk),
        },
        provisioner: pick(['csi.tandem.dev', pick(junk)]),
        parameters: pick([{ numberOfReplicas: pick(junk) }, pick(junk)]),
        metadata: pick([{ name: pick(junk), labels: pick(junk) }, pick(junk)]),
      };
      // Then damage the envelope at one random place.
      const damage = Math.floor(random() * 6);
      if (damage === 0) review.request.operation = pick(['CREATE', 'UPDATE', 'DELETE', pick(junk)]);
      if (damage === 1) review.request.oldObject = pick(junk);
      if (damage === 2) review.request.uid = pick(junk);
      if (damage === 3) review.request = pick(junk);
      let text = JSON.stringify(review);
      if (damage === 4) text = text.slice(0, Math.floor(random() * text.length));
      const path = pick(['/validate', '/mutate']);
      const reply = await send(path, text);
      statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
      expect(reply.status).toBeLessThan(500);
      // A 200 always echoes the uid that was sent (the fuzzer may have replaced it with another string).
      if (reply.status === 200) expect(JSON.parse(reply.body).response.uid).toBe(review.request.uid);
      else expect(JSON.parse(reply.body).error).toEqual(expect.any(String));
    }
    expect(statuses.get(200)).toBeGreaterThan(0);
    expect(statuses.get(400)).toBeGreaterThan(0);
    expect((await send('/validate', JSON.stringify(validReview('after')))).status).toBe(200);
  });

  it('serves health, readiness and metrics', async () => {
    expect((await send('/healthz', '', 'text/plain', 'GET')).body).toBe('ok');
    expect((await send('/readyz', '', 'text/plain', 'GET')).status).toBe(503);
    ready = true;
    expect((await send('/readyz', '', 'text/plain', 'GET')).status).toBe(200);
    const metrics = (await send('/metrics', '', 'text/plain', 'GET')).body;
    expect(metrics).toMatch(
      /tandem_admission_requests_total\{endpoint="validate",resource="StorageClass",operation="CREATE",verdict="allowed"/,
    );
    expect(metrics).toMatch(
      /tandem_admission_requests_total\{endpoint="validate",resource="unknown",operation="unknown",verdict="bad_request"/,
    );
    expect(metrics).toMatch(/tandem_admission_duration_seconds_bucket/);
  });
});
