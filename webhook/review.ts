import type { AdmissionRequest, GroupVersionKind, Operation, Verdict } from './admission.js';
import { isRecord } from './admission.js';

/**
 * The AdmissionReview envelope (admission.k8s.io/v1): decoding with exact
 * shape checks, so malformed input gets a 400 that says what is wrong, and
 * encoding of a rule's verdict.
 */

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
const OPERATIONS: readonly Operation[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'];
/** Kubernetes UIDs are UUIDs; anything longer is not a real request. */
const MAX_UID_LENGTH = 128;

export type DecodeResult = { ok: true; request: AdmissionRequest } | { ok: false; error: string };

export function decodeAdmissionReview(body: unknown): DecodeResult {
  if (!isRecord(body)) return fail('the body must be a JSON object (an AdmissionReview)');
  if (body.kind !== 'AdmissionReview')
    return fail(`kind must be "AdmissionReview", not ${describe(body.kind)}`);
  if (body.apiVersion !== ADMISSION_API_VERSION) {
    return fail(
      `apiVersion must be "${ADMISSION_API_VERSION}", not ${describe(body.apiVersion)} (register the webhook with admissionReviewVersions: ["v1"])`,
    );
  }
  const request = body.request;
  if (!isRecord(request)) return fail('request is missing or not an object');
  const uid = request.uid;
  if (typeof uid !== 'string' || uid.length === 0 || uid.length > MAX_UID_LENGTH) {
    return fail('request.uid must be a non-empty string');
  }
  const kind = groupVersionKind(request.kind);
  if (!kind) return fail('request.kind must be an object with string group, version and kind');
  const operation = OPERATIONS.find((o) => o === request.operation);
  if (!operation)
    return fail(
      `request.operation must be one of ${OPERATIONS.join(', ')}, not ${describe(request.operation)}`,
    );
  for (const field of ['namespace', 'name'] as const) {
    if (request[field] !== undefined && typeof request[field] !== 'string')
      return fail(`request.${field} must be a string`);
  }
  if (request.dryRun !== undefined && typeof request.dryRun !== 'boolean')
    return fail('request.dryRun must be a boolean');
  for (const field of ['object', 'oldObject'] as const) {
    if (request[field] !== undefined && request[field] !== null && !isRecord(request[field])) {
      return fail(`request.${field} must be an object`);
    }
  }
  if (operation !== 'DELETE' && operation !== 'CONNECT' && !isRecord(request.object)) {
    return fail(`request.object is required for ${operation}`);
  }
  if (operation === 'UPDATE' && !isRecord(request.oldObject))
    return fail('request.oldObject is required for UPDATE');
  return {
    ok: true,
    request: {
      uid,
      kind,
      operation,
      ...(typeof request.namespace === 'string' && request.namespace !== ''
        ? { namespace: request.namespace }
        : {}),
      ...(typeof request.name === 'string' && request.name !== '' ? { name: request.name } : {}),
      ...(isRecord(request.object) ? { object: request.object } : {}),
      ...(isRecord(request.oldObject) ? { oldObject: request.oldObject } : {}),
      ...(request.dryRun === true ? { dryRun: true } : {}),
    },
  };
}

export interface AdmissionReviewResponse {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: {
    uid: string;
    allowed: boolean;
    status?: { code: number; message: string; reason: string };
    warnings?: string[];
    patchType?: 'JSONPatch';
    patch?: string;
  };
}

export function encodeVerdict(uid: string, verdict: Verdict): AdmissionReviewResponse {
  const response: AdmissionReviewResponse['response'] = { uid, allowed: verdict.allowed };
  if (!verdict.allowed) {
    response.status = {
      code: verdict.code,
      message: verdict.message,
      reason: verdict.code === 422 ? 'Invalid' : 'Forbidden',
    };
  } else {
    if (verdict.warnings && verdict.warnings.length > 0) response.warnings = verdict.warnings;
    if (verdict.patch && verdict.patch.length > 0) {
      response.patchType = 'JSONPatch';
      response.patch = Buffer.from(JSON.stringify(verdict.patch)).toString('base64');
    }
  }
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

function groupVersionKind(value: unknown): GroupVersionKind | undefined {
  if (!isRecord(value)) return undefined;
  const { group, version, kind } = value;
  if (typeof group !== 'string' || typeof version !== 'string' || typeof kind !== 'string' || kind === '')
    return undefined;
  return { group, version, kind };
}

function fail(error: string): DecodeResult {
  return { ok: false, error };
}

/** A short, safe rendering of an unexpected value for an error message. */
function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
