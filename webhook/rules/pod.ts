import type { V1Pod } from '@kubernetes/client-node';
import { type AdmissionRequest, allow, forbidden, invalid, isRecord, type Verdict } from '../admission.js';
import type { ClusterView } from '../cluster-view.js';
import { classifyClaim, isMigratableTandem } from './tandem-claim.js';

/**
 * Which pods may open a claim bound to a migratable Tandem volume (DESIGN.md,
 * "Pod identity"). Such a volume may have two engines writing the same
 * replicas, which is only safe because KubeVirt hands the disk from the source
 * to the target virt-launcher pod of one live migration with one writer at a
 * time. Any other pod opening it would be a second, uncoordinated writer.
 */

const VM_NAME = 'vm.kubevirt.io/name';
const CREATED_BY = 'kubevirt.io/created-by';
const ROLE = 'kubevirt.io';
const LAUNCHER = 'virt-launcher';
const HOTPLUG = 'hotplug-disk';
const MAX_PODS = 2;

const RULE_OWNER = 'migratable-volume-pod-identity';
const RULE_ONE_VM = 'migratable-volume-one-vm';
const RULE_TWO_PODS = 'migratable-volume-two-pods';

/** What the rule reads of a pod, from the admitted object or from the cluster. */
interface PodFacts {
  name?: string;
  generateName?: string;
  uid?: string;
  labels: Record<string, string>;
  phase?: string;
  controller?: { kind?: string; name: string; uid?: string };
}

/** The pod being admitted, with the claims its volumes name. */
interface AdmittedPod extends PodFacts {
  namespace?: string;
  claimNames: string[];
}

export async function validatePod(request: AdmissionRequest, view: ClusterView): Promise<Verdict> {
  // Pod volumes are immutable: what was admitted at CREATE is what runs.
  if (request.operation !== 'CREATE') return allow();
  const pod = parseAdmittedPod(request.object);
  if (typeof pod === 'string') return invalid(`Tandem cannot check this pod: ${pod}`);
  const namespace = request.namespace ?? pod.namespace;
  if (!namespace) return invalid(`Tandem cannot check pod ${podRef(pod)}: the request has no namespace`);

  for (const claimName of pod.claimNames) {
    const claimClass = await classifyClaim(namespace, claimName, view);
    // A claim that does not exist yet, is not Tandem's, or is not migratable
    // needs no guard here; the driver checks pod identity again in
    // ControllerPublishVolume, which also covers claims created after the pod.
    if (!isMigratableTandem(claimClass)) continue;
    const refusal =
      (await checkIdentity(pod, namespace, claimName, view)) ??
      (await checkOtherUsers(pod, namespace, claimName, view));
    if (refusal) return refusal;
  }
  return allow();
}

/** The pod must be a virt-launcher pod, or a hotplug pod controlled by one, of a named VM. */
async function checkIdentity(
  pod: PodFacts,
  namespace: string,
  claimName: string,
  view: ClusterView,
): Promise<Verdict | undefined> {
  const problem = await identityProblem(pod, namespace, view);
  if (!problem) return undefined;
  return forbidden(
    `pod ${podRef(pod)} may not use claim ${claimName}: ${problem}. Rule ${RULE_OWNER}: a claim bound to a ` +
      `migratable Tandem volume may only be opened by the pods of one KubeVirt VM. Allowed: a pod labelled ` +
      `${ROLE}=${LAUNCHER} and ${VM_NAME}=<vm>, or a pod labelled ${ROLE}=${HOTPLUG} and ${VM_NAME}=<vm> ` +
      `whose controller owner reference names a ${LAUNCHER} pod of the same VM`,
  );
}

async function identityProblem(
  pod: PodFacts,
  namespace: string,
  view: ClusterView,
): Promise<string | undefined> {
  if (!pod.labels[VM_NAME]) return `it has no label ${VM_NAME}`;
  const role = pod.labels[ROLE];
  if (role === LAUNCHER) return undefined;
  if (role !== HOTPLUG) {
    return role === undefined ? `it has no label ${ROLE}` : `its label ${ROLE} is "${role}"`;
  }
  const owner = pod.controller;
  if (!owner) return `it is a ${HOTPLUG} pod without a controller owner reference`;
  if (owner.kind !== 'Pod') return `its controller is ${owner.kind ?? 'an object'} ${owner.name}, not a pod`;
  const ownerPod = await view.pod(namespace, owner.name);
  if (!ownerPod) return `its controller pod ${owner.name} does not exist`;
  const ownerFacts = factsOf(ownerPod);
  // A pod of the same name recreated since the reference was written is another pod.
  if (owner.uid && ownerFacts.uid && owner.uid !== ownerFacts.uid) {
    return `its controller reference names pod ${owner.name} with UID ${owner.uid}, but that pod now has UID ${ownerFacts.uid}`;
  }
  if (ownerFacts.labels[ROLE] !== LAUNCHER) {
    return `its controller pod ${owner.name} is not a ${LAUNCHER} pod`;
  }
  if (!sameVm(pod, ownerFacts)) {
    return `its controller pod ${owner.name} belongs to ${vmRef(ownerFacts)}, it to ${vmRef(pod)}`;
  }
  return undefined;
}

/** Every pod already using the claim belongs to this pod's VM, and there is at most one. */
async function checkOtherUsers(
  pod: PodFacts,
  namespace: string,
  claimName: string,
  view: ClusterView,
): Promise<Verdict | undefined> {
  const others = (await view.podsUsingClaim(namespace, claimName))
    .map(factsOf)
    // Terminated pods hold nothing open; terminating ones still may, so they count.
    .filter((other) => other.phase !== 'Succeeded' && other.phase !== 'Failed')
    // A create retried after a timeout may find its own pod already in the cache.
    .filter((other) => !(pod.name && other.name === pod.name));

  const stranger = others.find((other) => !sameVm(pod, other));
  if (stranger) {
    return forbidden(
      `pod ${podRef(pod)} of ${vmRef(pod)} may not use claim ${claimName}: pod ${podRef(stranger)} of ` +
        `${vmRef(stranger)} already uses it. Rule ${RULE_ONE_VM}: all pods using a claim bound to a migratable ` +
        `Tandem volume at the same time must belong to one VM. Allowed: a pod of ${vmRef(stranger)}, or this pod ` +
        `once ${podRef(stranger)} has terminated`,
    );
  }
  if (others.length + 1 > MAX_PODS) {
    return forbidden(
      `pod ${podRef(pod)} may not use claim ${claimName}: pods ${others.map(podRef).join(', ')} already use it. ` +
        `Rule ${RULE_TWO_PODS}: a migratable volume is opened by the source and target virt-launcher pods of ` +
        `one live migration, never by more than ${MAX_PODS} pods at once. Allowed: this pod once one of them ` +
        `has terminated`,
    );
  }
  return undefined;
}

/**
 * Two pods belong to one VM when their `kubevirt.io/created-by` labels (the
 * VMI's UID) match. Only when one of them lacks it do we fall back to
 * `vm.kubevirt.io/name`, which is weaker: it is the VM name sanitized into a
 * hostname (truncated, characters replaced), so distinct VMs can share it,
 * and it survives deleting and recreating a VM of the same name.
 */
function sameVm(a: PodFacts, b: PodFacts): boolean {
  const uidA = a.labels[CREATED_BY];
  const uidB = b.labels[CREATED_BY];
  if (uidA && uidB) return uidA === uidB;
  const nameA = a.labels[VM_NAME];
  return nameA !== undefined && nameA !== '' && nameA === b.labels[VM_NAME];
}

function vmRef(pod: PodFacts): string {
  const name = pod.labels[VM_NAME];
  const uid = pod.labels[CREATED_BY];
  if (!name) return 'no VM (no label vm.kubevirt.io/name)';
  return uid ? `VM ${name} (VMI UID ${uid})` : `VM ${name}`;
}

function podRef(pod: PodFacts): string {
  if (pod.name) return pod.name;
  if (pod.generateName) return `${pod.generateName}* (generateName)`;
  return '(unnamed)';
}

function factsOf(pod: V1Pod): PodFacts {
  const controller = pod.metadata?.ownerReferences?.find((ref) => ref.controller === true);
  return {
    name: pod.metadata?.name,
    generateName: pod.metadata?.generateName,
    uid: pod.metadata?.uid,
    labels: pod.metadata?.labels ?? {},
    phase: pod.status?.phase,
    controller: controller && { kind: controller.kind, name: controller.name, uid: controller.uid },
  };
}

/** Reads the admitted object, which is `unknown`; returns a message when it is not pod-shaped. */
function parseAdmittedPod(object: unknown): AdmittedPod | string {
  if (!isRecord(object)) return 'the object is not a Pod (expected a JSON object)';
  const { metadata, spec } = object;
  if (!isRecord(metadata)) return 'metadata must be an object';
  if (!isRecord(spec)) return 'spec must be an object';
  const labels = parseLabels(metadata.labels);
  if (typeof labels === 'string') return labels;
  const controller = parseController(metadata.ownerReferences);
  if (typeof controller === 'string') return controller;
  const claimNames = parseClaimNames(spec.volumes);
  if (typeof claimNames === 'string') return claimNames;
  return {
    name: optionalString(metadata.name),
    generateName: optionalString(metadata.generateName),
    namespace: optionalString(metadata.namespace),
    uid: optionalString(metadata.uid),
    labels,
    controller,
    claimNames,
  };
}

function parseLabels(labels: unknown): Record<string, string> | string {
  if (labels === undefined) return {};
  if (!isRecord(labels)) return 'metadata.labels must be an object';
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(labels)) {
    if (typeof value !== 'string') return `metadata.labels["${key}"] must be a string`;
    result[key] = value;
  }
  return result;
}

function parseController(refs: unknown): PodFacts['controller'] | string {
  if (refs === undefined) return undefined;
  if (!Array.isArray(refs)) return 'metadata.ownerReferences must be a list';
  for (const [index, ref] of refs.entries()) {
    if (!isRecord(ref) || typeof ref.name !== 'string') {
      return `metadata.ownerReferences[${index}] must be an object with a string name`;
    }
    if (ref.controller === true) {
      return { kind: optionalString(ref.kind), name: ref.name, uid: optionalString(ref.uid) };
    }
  }
  return undefined;
}

/** Claim names of spec.volumes, each once, in order. */
function parseClaimNames(volumes: unknown): string[] | string {
  if (volumes === undefined) return [];
  if (!Array.isArray(volumes)) return 'spec.volumes must be a list';
  const names = new Set<string>();
  for (const [index, volume] of volumes.entries()) {
    if (!isRecord(volume)) return `spec.volumes[${index}] must be an object`;
    const source = volume.persistentVolumeClaim;
    if (source === undefined) continue;
    if (!isRecord(source) || typeof source.claimName !== 'string' || source.claimName === '') {
      return `spec.volumes[${index}].persistentVolumeClaim.claimName must be a non-empty string`;
    }
    names.add(source.claimName);
  }
  return [...names];
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
