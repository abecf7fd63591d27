/**
 * The driver's own pod-identity check before a migratable volume gets a second engine (DESIGN.md
 * "Pod identity"; the webhook checks the same at admission, but webhooks can be bypassed): the
 * pods using the volume are virt-launcher pods (or hotplug pods) of one VM, at most two, and one
 * of them runs on each engine node.
 */
import type { PodUse } from './cluster.js';

const VM_NAME = 'vm.kubevirt.io/name';
const CREATED_BY = 'kubevirt.io/created-by';
const ROLE = 'kubevirt.io';
const ROLES = new Set(['virt-launcher', 'hotplug-disk']);
const MAX_PODS = 2;

/** undefined when allowed, else why not (in words for the user). */
export function checkMigrationPods(pods: PodUse[] | undefined, engineNodes: string[]): string | undefined {
  if (pods === undefined)
    return 'no PersistentVolume names this volume, so the pods asking for a second engine cannot be checked; a second engine is only for the pods of one KubeVirt VM';
  const ref = (p: PodUse) => `${p.namespace}/${p.name}`;
  const stranger = pods.find((p) => !p.labels[VM_NAME] || !ROLES.has(p.labels[ROLE] ?? ''));
  if (stranger)
    return `pod ${ref(stranger)} uses it but is not a virt-launcher or hotplug pod of a VM (labels ${ROLE} and ${VM_NAME})`;
  const vmKey = (p: PodUse) => p.labels[CREATED_BY] ?? `name:${p.labels[VM_NAME]}`;
  const vms = new Set(pods.map(vmKey));
  if (vms.size > 1) return `pods of more than one VM use it (${pods.map(ref).join(', ')}); one VM at a time`;
  const launchers = pods.filter((p) => p.labels[ROLE] === 'virt-launcher');
  if (launchers.length > MAX_PODS)
    return `${launchers.length} virt-launcher pods use it (${launchers.map(ref).join(', ')}); at most ${MAX_PODS}, the source and target of one migration`;
  const missing = engineNodes.filter((node) => !pods.some((p) => p.node === node));
  if (missing.length > 0)
    return `no pod of the VM is scheduled on ${missing.join(', ')}; an engine is only started where the VM's pod runs`;
  return undefined;
}
