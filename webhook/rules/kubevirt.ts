import { type AdmissionRequest, allow, forbidden, invalid, isRecord, type Verdict } from '../admission.js';
import type { ClusterView } from '../cluster-view.js';
import { type ClaimClass, classifyClaim } from './tandem-claim.js';

/**
 * KubeVirt VirtualMachines and VirtualMachineInstances (kubevirt.io/v1) that
 * ask to be live-migrated on eviction must be able to be. KubeVirt live-
 * migrates a VM only when every claim it uses is ReadWriteMany; Tandem serves
 * RWX Block as a migratable volume and RWX Filesystem over NFS, both of which
 * KubeVirt can migrate. A VM with evictionStrategy LiveMigrate and a Tandem
 * claim that is not RWX would be marked not live-migratable, and every node
 * drain would hang on it, so we refuse it while the user is still looking.
 *
 * Deny when we know, warn when we cannot: a claim that does not exist yet is
 * the normal case for a DataVolume (CDI creates the claim after the VM), and
 * refusing it would make such VMs impossible to create. We allow it with a
 * warning that names the claim; KubeVirt reports the VMI as not
 * live-migratable if the claim turns out wrong.
 */

type VmKind = 'VirtualMachine' | 'VirtualMachineInstance';

interface VmFacts {
  ref: string;
  evictionStrategy?: string;
  /** Claim names, each once. */
  claims: string[];
}

interface Blocker {
  claim: string;
  reason: string;
}

export async function validateVirtualMachine(request: AdmissionRequest, view: ClusterView): Promise<Verdict> {
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return allow();
  const kind = request.kind.kind;
  if (kind !== 'VirtualMachine' && kind !== 'VirtualMachineInstance') {
    return invalid(`Tandem's KubeVirt rule checks VirtualMachines and VirtualMachineInstances, not ${kind}`);
  }
  const vm = parseVm(kind, request.object);
  if (typeof vm === 'string') return invalid(`Tandem cannot check this ${kind}: ${vm}`);

  const strategy = vm.evictionStrategy;
  // None and External never live-migrate on eviction; an absent strategy
  // defers to the cluster-wide KubeVirt default, which this webhook cannot
  // see, so it is left to KubeVirt.
  if (strategy !== 'LiveMigrate' && strategy !== 'LiveMigrateIfPossible') return allow();
  if (request.operation === 'UPDATE' && unchanged(kind, vm, request.oldObject)) return allow();
  const namespace = request.namespace;
  if (!namespace) return invalid(`Tandem cannot check ${kind} ${vm.ref}: the request has no namespace`);

  const { blockers, missing } = await inspectClaims(namespace, vm.claims, view);
  if (strategy === 'LiveMigrateIfPossible') {
    // Falls back to shutting the VM down: legal, but probably not what was meant.
    return allow(
      blockers.map(
        (b) =>
          `claim ${b.claim} cannot be live-migrated (${b.reason}); with evictionStrategy ` +
          `LiveMigrateIfPossible, ${kind} ${vm.ref} will be shut down on eviction instead`,
      ),
    );
  }
  if (blockers.length > 0) return forbidden(refusal(kind, vm.ref, blockers));
  return allow(
    missing.map(
      (claim) =>
        `claim ${claim} of ${kind} ${vm.ref} does not exist yet, so Tandem could not check that it can be ` +
        `live-migrated (evictionStrategy LiveMigrate); a Tandem claim needs accessModes [ReadWriteMany]`,
    ),
  );
}

/**
 * An update that changes neither the strategy nor the claims was checked when
 * they were set. Checking it again would let this rule block KubeVirt's own
 * updates (finalizers, annotations, status where it is no subresource) of a VM
 * admitted before the webhook existed, or whose DataVolume claim appeared later.
 */
function unchanged(kind: VmKind, vm: VmFacts, oldObject: unknown): boolean {
  const old = parseVm(kind, oldObject);
  if (typeof old === 'string') return false;
  const names = (facts: VmFacts) => [...facts.claims].sort().join('\n');
  return old.evictionStrategy === vm.evictionStrategy && names(old) === names(vm);
}

async function inspectClaims(
  namespace: string,
  claims: string[],
  view: ClusterView,
): Promise<{ blockers: Blocker[]; missing: string[] }> {
  const blockers: Blocker[] = [];
  const missing: string[] = [];
  for (const claim of claims) {
    const claimClass = await classifyClaim(namespace, claim, view);
    if (claimClass.kind === 'not-found') missing.push(claim);
    // Other drivers' claims are their own (and KubeVirt's) business.
    if (claimClass.kind !== 'tandem') continue;
    const reason = blockReason(claimClass);
    if (reason) blockers.push({ claim, reason });
  }
  return { blockers, missing };
}

/** Why a Tandem claim cannot follow its VM to another node, or undefined when it can. */
function blockReason(claimClass: Extract<ClaimClass, { kind: 'tandem' }>): string | undefined {
  const { accessModes, volumeMode, migratable } = claimClass;
  if (!accessModes.includes('ReadWriteMany')) {
    const modes = accessModes.length > 0 ? accessModes.join(', ') : 'no access mode';
    return `${modes}, ${volumeMode}: not ReadWriteMany`;
  }
  // The claim rule refuses this combination, but a claim may predate it; the
  // driver would refuse to attach the volume on the migration's target node.
  if (volumeMode === 'Block' && !migratable) return 'ReadWriteMany Block, but its volume is not migratable';
  return undefined;
}

function refusal(kind: VmKind, ref: string, blockers: Blocker[]): string {
  const list = blockers.map((b) => `${b.claim} (${b.reason})`).join('; ');
  return (
    `${kind} ${ref} has evictionStrategy LiveMigrate, but these Tandem claims cannot be live-migrated: ${list}. ` +
    `KubeVirt would mark the VMI not live-migratable, and node drains would hang on it. Fix: put each disk ` +
    `on a claim with accessModes [ReadWriteMany] and volumeMode Block from a StorageClass with ` +
    `migratable: "true", or set evictionStrategy to None or External`
  );
}

/** Reads the admitted object, which is `unknown`; returns a message when it is not shaped like `kind`. */
function parseVm(kind: VmKind, object: unknown): VmFacts | string {
  if (!isRecord(object)) return `the object is not a ${kind} (expected a JSON object)`;
  const { metadata, spec } = object;
  if (!isRecord(metadata)) return 'metadata must be an object';
  if (!isRecord(spec)) return 'spec must be an object';
  const path = kind === 'VirtualMachine' ? 'spec.template.spec' : 'spec';
  const vmiSpec = kind === 'VirtualMachine' ? templateSpec(spec) : spec;
  if (!vmiSpec) return `${path} must be an object`;

  const evictionStrategy = vmiSpec.evictionStrategy;
  if (evictionStrategy !== undefined && typeof evictionStrategy !== 'string') {
    return `${path}.evictionStrategy must be a string`;
  }
  const claims = parseClaims(vmiSpec.volumes, `${path}.volumes`);
  if (typeof claims === 'string') return claims;
  return { ref: nameOf(metadata), evictionStrategy, claims };
}

function templateSpec(spec: Record<string, unknown>): Record<string, unknown> | undefined {
  const template = spec.template;
  return isRecord(template) && isRecord(template.spec) ? template.spec : undefined;
}

/** Claims named by persistentVolumeClaim and dataVolume volumes (a DataVolume's claim has its name). */
function parseClaims(volumes: unknown, path: string): string[] | string {
  if (volumes === undefined) return [];
  if (!Array.isArray(volumes)) return `${path} must be a list`;
  const claims = new Set<string>();
  for (const [index, volume] of volumes.entries()) {
    if (!isRecord(volume)) return `${path}[${index}] must be an object`;
    const pvc = sourceName(volume.persistentVolumeClaim, 'claimName');
    const dataVolume = sourceName(volume.dataVolume, 'name');
    if (pvc === null) return `${path}[${index}].persistentVolumeClaim.claimName must be a non-empty string`;
    if (dataVolume === null) return `${path}[${index}].dataVolume.name must be a non-empty string`;
    const claim = pvc ?? dataVolume;
    if (claim !== undefined) claims.add(claim);
  }
  return [...claims];
}

/** The named string field of a volume source: undefined when there is no such source, null when malformed. */
function sourceName(source: unknown, field: string): string | undefined | null {
  if (source === undefined) return undefined;
  if (!isRecord(source)) return null;
  const value = source[field];
  return typeof value === 'string' && value !== '' ? value : null;
}

function nameOf(metadata: Record<string, unknown>): string {
  const namespace = typeof metadata.namespace === 'string' ? `${metadata.namespace}/` : '';
  if (typeof metadata.name === 'string' && metadata.name !== '') return `${namespace}${metadata.name}`;
  if (typeof metadata.generateName === 'string') {
    return `${namespace}${metadata.generateName}* (generateName)`;
  }
  return `${namespace}(unnamed)`;
}
