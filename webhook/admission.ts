import type { Operation as PatchOperation } from 'rfc6902';

/** What every rule sees of an AdmissionReview request (admission.k8s.io/v1), already shape-checked. */
export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

export interface AdmissionRequest {
  uid: string;
  kind: GroupVersionKind;
  operation: Operation;
  namespace?: string;
  name?: string;
  /** The object as admitted (absent on DELETE). Rules check its shape before use. */
  object?: unknown;
  /** The object before an UPDATE or DELETE. */
  oldObject?: unknown;
  dryRun?: boolean;
}

/**
 * A rule's decision. Denials carry an HTTP code the apiserver hands back to
 * the client: 422 when the object itself is invalid, 403 when it is valid but
 * not allowed (policy, such as which pods may open a volume).
 */
export type Verdict =
  | { allowed: true; warnings?: string[]; patch?: PatchOperation[] }
  | { allowed: false; code: 403 | 422; message: string };

export const allow = (warnings?: string[]): Verdict =>
  warnings && warnings.length > 0 ? { allowed: true, warnings } : { allowed: true };

export const invalid = (message: string): Verdict => ({ allowed: false, code: 422, message });

export const forbidden = (message: string): Verdict => ({ allowed: false, code: 403, message });

/** Object, not array, not null: the first check any rule makes of a field it reads. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
