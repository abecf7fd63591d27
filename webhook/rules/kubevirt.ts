import { DISK_CACHE_MODES, SAFE_CACHE_MODES } from '../../lib/kubevirt/vocabulary.js';
import { type AdmissionRequest, allow, forbidden, invalid, isRecord, type Verdict } from '../admission.js';
import type { ClusterView } from '../cluster-view.js';
import { type ClaimClass, classifyClaim, isMigratableTandem } from './tandem-claim.js';

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
 *
 * Whatever the eviction strategy (a migration can also be started by hand), a migratable Tandem
 * claim must not sit behind a disk cache mode that reads through the node's page cache
 * (`writeback`, `writethrough`, `unsafe`): during a migration both nodes have the device open, and
 * the target would return what it cached before the switch instead of what the source wrote.
 */

type VmKind = 'VirtualMachine' | 'VirtualMachineInstance';

interface VmFacts {
  ref: string;
  evictionStrategy?: string;
  /** Claim names, each once. */
  claims: string[];
  /** The cache mode of the disks of each claim's volume, where a disk sets one. */
  cacheModes: { claim: string; disk: string; cache: string }[];
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

  if (request.operation === 'UPDATE' && unchanged(kind, vm, request.oldObject)) return allow();
  const unsafeCache = await unsafeCacheModes(request.namespace, vm, view);
  if (unsafeCache.length > 0) return forbidden(cacheRefusal(kind, vm.ref, unsafeCache));

  const strategy = vm.evictionStrategy;
  // None and External never live-migrate on eviction; an absent strategy
  // defers to the cluster-wide KubeVirt default, which this webhook cannot
  // see, so it is left to KubeVirt.
  if (strategy !== 'LiveMigrate' && strategy !== 'LiveMigrateIfPossible') return allow();
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
  const caches = (facts: VmFacts) =>
    facts.cacheModes
      .map((c) => `${c.claim}=${c.cache}`)
      .sort()
      .join('\n');
  return (
    old.evictionStrategy === vm.evictionStrategy && names(old) === names(vm) && caches(old) === caches(vm)
  );
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

/** Disks of migratable Tandem claims whose cache mode reads through the page cache. */
async function unsafeCacheModes(
  namespace: string | undefined,
  vm: VmFacts,
  view: ClusterView,
): Promise<VmFacts['cacheModes']> {
  const risky = vm.cacheModes.filter((c) => !SAFE_CACHE_MODES.has(c.cache));
  if (risky.length === 0 || !namespace) return [];
  const unsafe: VmFacts['cacheModes'] = [];
  for (const disk of risky) {
    if (isMigratableTandem(await classifyClaim(namespace, disk.claim, view))) unsafe.push(disk);
  }
  return unsafe;
}

function cacheRefusal(kind: VmKind, ref: string, disks: VmFacts['cacheModes']): string {
  const list = disks.map((d) => `disk ${d.disk} (claim ${d.claim}) has cache ${d.cache}`).join('; ');
  return (
    `${kind} ${ref}: ${list}. A migratable Tandem volume is open on two nodes during a live migration, and ` +
    `with this cache mode QEMU reads through the page cache of its own node, which keeps what it read before ` +
    `the other node wrote: the guest would read stale data after the switch. Fix: set cache to none (or ` +
    `directsync), or leave it unset (KubeVirt then picks none for a block volume)`
  );
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
  const cacheModes = parseCacheModes(vmiSpec, path, claims);
  if (typeof cacheModes === 'string') return cacheModes;
  return {
    ref: nameOf(metadata),
    evictionStrategy,
    claims: [...new Set(claims.map((c) => c.claim))],
    cacheModes,
  };
}

function templateSpec(spec: Record<string, unknown>): Record<string, unknown> | undefined {
  const template = spec.template;
  return isRecord(template) && isRecord(template.spec) ? template.spec : undefined;
}

/** Claims named by persistentVolumeClaim and dataVolume volumes (a DataVolume's claim has its name). */
function parseClaims(volumes: unknown, path: string): { volume: string; claim: string }[] | string {
  if (volumes === undefined) return [];
  if (!Array.isArray(volumes)) return `${path} must be a list`;
  const claims: { volume: string; claim: string }[] = [];
  for (const [index, volume] of volumes.entries()) {
    if (!isRecord(volume)) return `${path}[${index}] must be an object`;
    const pvc = sourceName(volume.persistentVolumeClaim, 'claimName');
    const dataVolume = sourceName(volume.dataVolume, 'name');
    if (pvc === null) return `${path}[${index}].persistentVolumeClaim.claimName must be a non-empty string`;
    if (dataVolume === null) return `${path}[${index}].dataVolume.name must be a non-empty string`;
    const claim = pvc ?? dataVolume;
    if (claim !== undefined)
      claims.push({ volume: typeof volume.name === 'string' ? volume.name : '', claim });
  }
  return claims;
}

/**
 * The cache mode of each disk that sets one, with the claim its volume names (a disk and its
 * volume share a name in KubeVirt).
 */
function parseCacheModes(
  vmiSpec: Record<string, unknown>,
  path: string,
  claims: { volume: string; claim: string }[],
): VmFacts['cacheModes'] | string {
  const domain = vmiSpec.domain;
  const devices = isRecord(domain) ? domain.devices : undefined;
  const disks = isRecord(devices) ? devices.disks : undefined;
  if (disks === undefined) return [];
  if (!Array.isArray(disks)) return `${path}.domain.devices.disks must be a list`;
  const modes: VmFacts['cacheModes'] = [];
  for (const [index, disk] of disks.entries()) {
    if (!isRecord(disk)) return `${path}.domain.devices.disks[${index}] must be an object`;
    const cache = disk.cache;
    if (cache === undefined || cache === '') continue;
    if (typeof cache !== 'string' || !(DISK_CACHE_MODES as readonly string[]).includes(cache))
      return `${path}.domain.devices.disks[${index}].cache must be one of ${DISK_CACHE_MODES.join(', ')}, not ${JSON.stringify(cache)}`;
    const name = typeof disk.name === 'string' ? disk.name : '';
    for (const c of claims) if (c.volume === name) modes.push({ claim: c.claim, disk: name, cache });
  }
  return modes;
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
