import { createPatch } from 'rfc6902';
import { CSI_DRIVER_NAME } from '../lib/api/volume.js';
import { parseStorageClassParameters, withExplicitDefaults } from '../lib/params/storage-class.js';
import { type AdmissionRequest, allow, isRecord, type Verdict } from './admission.js';
import type { ClusterView } from './cluster-view.js';
import { validateVirtualMachine } from './rules/kubevirt.js';
import { validatePod } from './rules/pod.js';
import { validateClaim } from './rules/pvc.js';
import { validateStorageClass } from './rules/storage-class.js';
import { validateVolume } from './rules/volume.js';

type Rule = (request: AdmissionRequest, view: ClusterView) => Promise<Verdict> | Verdict;

/** group/Kind → validating rule. Kinds not listed are allowed: the webhook configuration never sends them. */
const VALIDATORS: Record<string, Rule> = {
  '/PersistentVolumeClaim': validateClaim,
  'storage.k8s.io/StorageClass': validateStorageClass,
  '/Pod': validatePod,
  'kubevirt.io/VirtualMachine': validateVirtualMachine,
  'kubevirt.io/VirtualMachineInstance': validateVirtualMachine,
  'tandem.dev/Volume': validateVolume,
};

export function resourceKey(request: AdmissionRequest): string {
  return `${request.kind.group}/${request.kind.kind}`;
}

export async function validate(request: AdmissionRequest, view: ClusterView): Promise<Verdict> {
  const rule = VALIDATORS[resourceKey(request)];
  return rule ? rule(request, view) : allow();
}

/**
 * Mutation: a new Tandem StorageClass gets every default written out, so what
 * the class does is visible in the object and does not change if a default
 * changes in a later release. Invalid parameters are left alone: the
 * validating webhook refuses them with the reason.
 */
export function mutate(request: AdmissionRequest): Verdict {
  if (resourceKey(request) !== 'storage.k8s.io/StorageClass' || request.operation !== 'CREATE')
    return allow();
  const object = request.object;
  if (!isRecord(object) || object.provisioner !== CSI_DRIVER_NAME) return allow();
  const parameters = isRecord(object.parameters) ? stringMap(object.parameters) : {};
  if (parameters === undefined || !parseStorageClassParameters(parameters).ok) return allow();
  const patch = createPatch(object, { ...object, parameters: withExplicitDefaults(parameters) });
  return patch.length > 0 ? { allowed: true, patch } : allow();
}

function stringMap(value: Record<string, unknown>): Record<string, string> | undefined {
  const entries = Object.entries(value);
  return entries.every(([, v]) => typeof v === 'string')
    ? (Object.fromEntries(entries) as Record<string, string>)
    : undefined;
}
