import { decodeAdmissionReview, encodeVerdict } from './review.js';

const review = (request: object) => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request });
const base = {
  uid: 'u',
  kind: { group: '', version: 'v1', kind: 'Pod' },
  operation: 'CREATE',
  namespace: 'ns',
  object: {},
};

describe('AdmissionReview codec', () => {
  it('decodes a well-formed request and drops empty optional fields', () => {
    const decoded = decodeAdmissionReview(review({ ...base, name: '', dryRun: true }));
    expect(decoded).toEqual({
      ok: true,
      request: { uid: 'u', kind: base.kind, operation: 'CREATE', namespace: 'ns', object: {}, dryRun: true },
    });
  });

  it.each([
    [null, /JSON object/],
    [{ ...review(base), kind: 'Other' }, /kind must be "AdmissionReview", not "Other"/],
    [{ ...review(base), apiVersion: undefined }, /apiVersion must be "admission.k8s.io\/v1", not missing/],
    [review({ ...base, uid: '' }), /uid/],
    [review({ ...base, uid: 'x'.repeat(200) }), /uid/],
    [review({ ...base, kind: { group: '', version: 'v1' } }), /request.kind/],
    [review({ ...base, operation: 'create' }), /operation must be one of CREATE, UPDATE, DELETE, CONNECT/],
    [review({ ...base, namespace: 5 }), /namespace must be a string/],
    [review({ ...base, dryRun: 'yes' }), /dryRun/],
    [review({ ...base, object: undefined }), /object is required for CREATE/],
    [review({ ...base, operation: 'UPDATE' }), /oldObject is required/],
    [review({ ...base, object: 'x'.repeat(500) }), /object must be an object/],
  ])('refuses %#', (body, message) => {
    const decoded = decodeAdmissionReview(body);
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) {
      expect(decoded.error).toMatch(message);
      expect(decoded.error.length).toBeLessThan(200);
    }
  });

  it('accepts DELETE without object', () => {
    expect(
      decodeAdmissionReview(review({ ...base, operation: 'DELETE', object: undefined, oldObject: {} })).ok,
    ).toBe(true);
  });

  it('encodes denials with code and reason, allowances with warnings and a base64 JSON patch', () => {
    expect(encodeVerdict('a', { allowed: false, code: 422, message: 'bad' }).response).toEqual({
      uid: 'a',
      allowed: false,
      status: { code: 422, message: 'bad', reason: 'Invalid' },
    });
    expect(encodeVerdict('b', { allowed: false, code: 403, message: 'no' }).response.status?.reason).toBe(
      'Forbidden',
    );
    const patch = [{ op: 'add' as const, path: '/x', value: 1 }];
    const allowed = encodeVerdict('c', { allowed: true, warnings: ['careful'], patch }).response;
    expect(allowed).toMatchObject({ uid: 'c', allowed: true, warnings: ['careful'], patchType: 'JSONPatch' });
    expect(JSON.parse(Buffer.from(allowed.patch ?? '', 'base64').toString())).toEqual(patch);
  });
});
