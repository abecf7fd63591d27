import type { V1Pod } from '@kubernetes/client-node';
import {
  APP_LABEL,
  CREATED_BY_LABEL,
  HOTPLUG_ROLE,
  LAUNCHER_ROLE,
  MAX_VM_PODS,
  podFinished,
  sameVm,
  VM_NAME_LABEL,
  vmPodLabels,
  vmRef,
} from '../../lib/kubevirt/vocabulary.js';
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
    const identity = await checkIdentity(pod, namespace, claimName, view);
    if ('refusal' in identity) return identity.refusal;
    const refusal = await checkOtherUsers(pod, identity.vm, namespace, claimName, view);
    if (refusal) return refusal;
  }
  return allow();
}

/**
 * The pod must be a virt-launcher pod, or a hotplug pod controlled by one, of a named VM; returns
 * the labels naming that VM.
 */
async function checkIdentity(
  pod: PodFacts,
  namespace: string,
  claimName: string,
  view: ClusterView,
): Promise<{ vm: Record<string, string> } | { refusal: Verdict }> {
  const vm = await vmOf(pod, namespace, view);
  if (typeof vm !== 'string') return { vm };
  const refusal = forbidden(
    `pod ${podRef(pod)} may not use claim ${claimName}: ${vm}. Rule ${RULE_OWNER}: a claim bound to a ` +
      `migratable Tandem volume may only be opened by the pods of one KubeVirt VM. Allowed: a pod labelled ` +
      `${APP_LABEL}=${LAUNCHER_ROLE} and ${VM_NAME_LABEL}=<vm>, or a pod labelled ${APP_LABEL}=${HOTPLUG_ROLE} ` +
      `whose controller owner reference names a ${LAUNCHER_ROLE} pod of the VM (and whose own ` +
      `${CREATED_BY_LABEL} and ${VM_NAME_LABEL} labels, if any, name that VM)`,
  );
  return { refusal };
}

/**
 * The labels naming the pod's VM, or why it belongs to none: its own for a launcher, its
 * controller launcher's for a hotplug pod. KubeVirt labels a hotplug pod with its role only
 * (`kubevirt.io=hotplug-disk`); the VM is known through its controller owner reference. The
 * driver checks the same (driver/controller/pod-identity.ts).
 */
async function vmOf(
  pod: PodFacts,
  namespace: string,
  view: ClusterView,
): Promise<Record<string, string> | string> {
  const role = pod.labels[APP_LABEL];
  if (role !== HOTPLUG_ROLE && !pod.labels[VM_NAME_LABEL]) return `it has no label ${VM_NAME_LABEL}`;
  if (role === LAUNCHER_ROLE) return pod.labels;
  if (role !== HOTPLUG_ROLE) {
    return role === undefined ? `it has no label ${APP_LABEL}` : `its label ${APP_LABEL} is "${role}"`;
  }
  const owner = pod.controller;
  if (!owner) return `it is a ${HOTPLUG_ROLE} pod without a controller owner reference`;
  if (owner.kind !== 'Pod') return `its controller is ${owner.kind ?? 'an object'} ${owner.name}, not a pod`;
  const ownerPod = await view.pod(namespace, owner.name);
  if (!ownerPod) return `its controller pod ${owner.name} does not exist`;
  const ownerFacts = factsOf(ownerPod);
  // A pod of the same name recreated since the reference was written is another pod.
  if (owner.uid && ownerFacts.uid && owner.uid !== ownerFacts.uid) {
    return `its controller reference names pod ${owner.name} with UID ${owner.uid}, but that pod now has UID ${ownerFacts.uid}`;
  }
  if (ownerFacts.labels[APP_LABEL] !== LAUNCHER_ROLE) {
    return `its controller pod ${owner.name} is not a ${LAUNCHER_ROLE} pod`;
  }
  if (!ownerFacts.labels[VM_NAME_LABEL]) {
    return `its controller pod ${owner.name} has no label ${VM_NAME_LABEL}`;
  }
  // VM labels of its own, when it has any, must name the launcher's VM.
  const own = vmPodLabels(pod.labels);
  if ((own.vmName || own.vmiUid) && !sameVm(pod.labels, ownerFacts.labels)) {
    return `its controller pod ${owner.name} belongs to ${vmRef(ownerFacts.labels)}, it to ${vmRef(pod.labels)}`;
  }
  return ownerFacts.labels;
}

/** A pod already using the claim, with the labels naming its VM and words for that VM. */
interface OtherUser extends PodFacts {
  vm: Record<string, string>;
  vmWords: string;
}

/**
 * Who an existing pod belongs to: what vmOf resolves, else its own labels, as before hotplug pods
 * were resolved through their owner. A hotplug pod without VM labels whose owner cannot be
 * resolved (deleted, recreated, not a launcher of a VM) then belongs to no VM and so counts as a
 * stranger: it is not skipped, because it may still hold the volume attached (an orphan waiting
 * for garbage collection, or a launcher the cache has not seen), and the driver refuses a second
 * engine while it exists anyway. Refusing fails closed and heals once the orphan is collected.
 */
async function otherUser(pod: PodFacts, namespace: string, view: ClusterView): Promise<OtherUser> {
  const vm = await vmOf(pod, namespace, view);
  if (typeof vm !== 'string') return { ...pod, vm, vmWords: vmRef(vm) };
  const own = vmPodLabels(pod.labels);
  const unresolvedHotplug = own.role === HOTPLUG_ROLE && !own.vmName && !own.vmiUid;
  return { ...pod, vm: pod.labels, vmWords: unresolvedHotplug ? `no VM (${vm})` : vmRef(pod.labels) };
}

/** Every pod already using the claim belongs to this pod's VM, and there is at most one. */
async function checkOtherUsers(
  pod: PodFacts,
  vm: Record<string, string>,
  namespace: string,
  claimName: string,
  view: ClusterView,
): Promise<Verdict | undefined> {
  const candidates = (await view.podsUsingClaim(namespace, claimName))
    .map(factsOf)
    // Terminated pods hold nothing open; terminating ones still may, so they count.
    .filter((other) => !podFinished(other.phase))
    // A create retried after a timeout may find its own pod already in the cache.
    .filter((other) => !(pod.name && other.name === pod.name));
  const others = await Promise.all(candidates.map((other) => otherUser(other, namespace, view)));

  const stranger = others.find((other) => !sameVm(vm, other.vm));
  if (stranger) {
    return forbidden(
      `pod ${podRef(pod)} of ${vmRef(vm)} may not use claim ${claimName}: pod ${podRef(stranger)} of ` +
        `${stranger.vmWords} already uses it. Rule ${RULE_ONE_VM}: all pods using a claim bound to a ` +
        `migratable Tandem volume at the same time must belong to one VM. Allowed: a pod of ` +
        `${stranger.vmWords}, or this pod once ${podRef(stranger)} has terminated`,
    );
  }
  if (others.length + 1 > MAX_VM_PODS) {
    return forbidden(
      `pod ${podRef(pod)} may not use claim ${claimName}: pods ${others.map(podRef).join(', ')} already use it. ` +
        `Rule ${RULE_TWO_PODS}: a migratable volume is opened by the source and target virt-launcher pods of ` +
        `one live migration, never by more than ${MAX_VM_PODS} pods at once. Allowed: this pod once one of them ` +
        `has terminated`,
    );
  }
  return undefined;
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
