/**
 * The driver's own pod-identity check before a migratable volume gets a second engine (DESIGN.md
 * "Pod identity"; the webhook checks the same at admission, but webhooks can be bypassed): the
 * pods using the volume are virt-launcher pods of one VM, at most two, or hotplug pods controlled
 * by one, and one of them runs on each engine node.
 */
import {
  APP_LABEL,
  HOTPLUG_ROLE,
  LAUNCHER_ROLE,
  MAX_VM_PODS,
  sameVm,
  VM_NAME_LABEL,
  vmPodLabels,
  vmRef,
} from '../../lib/kubevirt/vocabulary.js';
import type { PodUse } from './cluster.js';

const ref = (p: PodUse) => `${p.namespace}/${p.name}`;

/** undefined when allowed, else why not (in words for the user). */
export function checkMigrationPods(pods: PodUse[] | undefined, engineNodes: string[]): string | undefined {
  if (pods === undefined)
    return 'no PersistentVolume names this volume, so the pods asking for a second engine cannot be checked; a second engine is only for the pods of one KubeVirt VM';
  // The labels that name each pod's VM: its own for a launcher, its launcher's for a hotplug pod.
  const vms: Record<string, string>[] = [];
  for (const pod of pods) {
    const vm = vmOf(pod, pods);
    if (typeof vm === 'string')
      return `pod ${ref(pod)} uses it but is not a virt-launcher or hotplug pod of a VM: ${vm} (a ${LAUNCHER_ROLE} pod carries labels ${APP_LABEL}=${LAUNCHER_ROLE} and ${VM_NAME_LABEL}; a ${HOTPLUG_ROLE} pod is controlled by a ${LAUNCHER_ROLE} pod of the same VM)`;
    vms.push(vm);
  }
  // Pairwise, like the webhook: the name fallback of sameVm is not transitive (a pod without a
  // VMI UID matches two VMIs of one name that do not match each other).
  if (vms.some((a) => vms.some((b) => !sameVm(a, b))))
    return `pods of more than one VM use it (${pods.map(ref).join(', ')}); one VM at a time`;
  // A hotplug pod belongs to its launcher; only launchers are the source and target.
  const launchers = pods.filter((p) => vmPodLabels(p.labels).role === LAUNCHER_ROLE);
  if (launchers.length > MAX_VM_PODS)
    return `${launchers.length} virt-launcher pods use it (${launchers.map(ref).join(', ')}); at most ${MAX_VM_PODS}, the source and target of one migration`;
  const missing = engineNodes.filter((node) => !pods.some((p) => p.node === node));
  if (missing.length > 0)
    return `no pod of the VM is scheduled on ${missing.join(', ')}; an engine is only started where the VM's pod runs`;
  return undefined;
}

/** The labels naming the pod's VM, or why it belongs to none (the webhook's identity rule). */
function vmOf(pod: PodUse, pods: PodUse[]): Record<string, string> | string {
  const { role, vmName } = vmPodLabels(pod.labels);
  if (role === LAUNCHER_ROLE) return vmName ? pod.labels : `it has no label ${VM_NAME_LABEL}`;
  if (role !== HOTPLUG_ROLE)
    return role === undefined ? `it has no label ${APP_LABEL}` : `its label ${APP_LABEL} is "${role}"`;
  // KubeVirt labels a hotplug pod with its role only; its controller reference names the launcher.
  const owner = pod.controller;
  if (!owner) return `it is a ${HOTPLUG_ROLE} pod without a controller owner reference`;
  if (owner.kind !== 'Pod') return `its controller is ${owner.kind} ${owner.name}, not a pod`;
  const launcher =
    pod.controllerPod ?? pods.find((p) => p.namespace === pod.namespace && p.name === owner.name);
  if (!launcher) return `its controller pod ${owner.name} does not exist`;
  // A pod of the same name recreated since the reference was written is another pod.
  if (owner.uid && launcher.uid && owner.uid !== launcher.uid)
    return `its controller reference names pod ${owner.name} with UID ${owner.uid}, but that pod now has UID ${launcher.uid}`;
  const ownerLabels = vmPodLabels(launcher.labels);
  if (ownerLabels.role !== LAUNCHER_ROLE || !ownerLabels.vmName)
    return `its controller pod ${owner.name} is not a ${LAUNCHER_ROLE} pod of a VM`;
  // VM labels of its own, when it has any, must name the launcher's VM.
  const own = vmPodLabels(pod.labels);
  if ((own.vmName || own.vmiUid) && !sameVm(pod.labels, launcher.labels))
    return `its controller pod ${owner.name} belongs to ${vmRef(launcher.labels)}, it to ${vmRef(pod.labels)}`;
  return launcher.labels;
}
