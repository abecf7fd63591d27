import type { AccessMode, Volume, VolumeMode, VolumeSpec } from '../../lib/api/volume.js';
import { parseStorageClassParameters, type TandemClassParameters } from '../../lib/params/storage-class.js';
import { alreadyExists, invalidArgument, outOfRange } from '../csi/errors.js';
import { CREATE_ACCESS_MODES, type CsiVolumeCapability, parseCapability } from './capabilities.js';
import { type CsiTopology, type CsiTopologyRequirement, formatBytes } from './placement.js';

// ---------------------------------------------------------------------------
// CreateVolumeRequest as @grpc/proto-loader decodes it: snake_case fields,
// int64 as decimal strings, absent messages null, absent maps {}.

/** int64 fields arrive as strings; numbers are accepted too (tests, other callers). */
export type CsiInt64 = string | number;

export interface CsiCapacityRange {
  required_bytes?: CsiInt64;
  limit_bytes?: CsiInt64;
}

export interface CsiVolumeContentSource {
  snapshot?: { snapshot_id?: string } | null;
  volume?: { volume_id?: string } | null;
  type?: 'snapshot' | 'volume';
}

export interface CreateVolumeRequest {
  name: string;
  capacity_range?: CsiCapacityRange | null;
  volume_capabilities?: CsiVolumeCapability[] | null;
  parameters?: Record<string, string> | null;
  secrets?: Record<string, string> | null;
  volume_content_source?: CsiVolumeContentSource | null;
  accessibility_requirements?: CsiTopologyRequirement | null;
  mutable_parameters?: Record<string, string> | null;
}

/** Everything CreateVolume decided from the request, before it touches the cluster. */
export interface CreateVolumePlan {
  name: string;
  sizeBytes: number;
  /** The range asked for (0 = unset), kept to judge a volume that already exists. */
  capacity: { requiredBytes: number; limitBytes: number };
  accessMode: AccessMode;
  volumeMode: VolumeMode;
  /** The StorageClass parameters, with fsType resolved against the capability's fs_type. */
  parameters: TandemClassParameters;
  /** For placement; lists are [] when the CO sent none. */
  topology: { requisite: CsiTopology[]; preferred: CsiTopology[] };
}

export const BLOCK_BYTES = 4096;
/** The CRD's minimum sizeBytes. */
export const MIN_VOLUME_BYTES = 1024 * 1024;
/** When the CO gives no size: small enough to fit anywhere, big enough for a filesystem. */
export const DEFAULT_VOLUME_BYTES = 1024 ** 3;
/** Sizes are JavaScript numbers in the Volume resource; above this they would round. */
export const MAX_VOLUME_BYTES = Math.floor(Number.MAX_SAFE_INTEGER / BLOCK_BYTES) * BLOCK_BYTES;

/**
 * external-provisioner's own keys: it interprets fstype and the secret names
 * itself, and with --extra-create-metadata adds pvc/name, pvc/namespace and
 * pv/name, which are not StorageClass parameters (the webhook refuses them
 * on a class). The fstype it passes on as the mount capability's fs_type.
 */
const PROVISIONER_PREFIX = 'csi.storage.k8s.io/';

export const LEGAL_COMBINATIONS = [
  'ReadWriteOnce or ReadWriteOncePod with volumeMode Filesystem or Block (class not migratable)',
  'ReadWriteMany with volumeMode Filesystem (served over NFS; class not migratable)',
  'ReadWriteMany with volumeMode Block (class with migratable: "true")',
].join('; ');

/**
 * Checks a CreateVolumeRequest and works out what volume it asks for. Every
 * refusal is a CsiError: INVALID_ARGUMENT for a request Tandem will never
 * serve as it is, OUT_OF_RANGE for a capacity it cannot meet. Pure: the
 * handler looks up existing Volumes and nodes afterwards.
 */
export function planCreateVolume(request: CreateVolumeRequest): CreateVolumePlan {
  if (!request.name) throw invalidArgument('name is empty; the CO must name the volume');
  const source = request.volume_content_source;
  if (source && (source.type || source.snapshot || source.volume)) {
    const what = source.type ?? (source.snapshot ? 'snapshot' : 'volume');
    throw invalidArgument(
      `volume_content_source (${what}) is not supported: Tandem creates empty volumes only, without snapshots or clones; remove the PVC's dataSource`,
    );
  }
  const mutable = Object.keys(request.mutable_parameters ?? {});
  if (mutable.length > 0) {
    throw invalidArgument(
      `mutable_parameters (${mutable.join(', ')}) are not supported: Tandem has no parameters that can change after creation; remove the VolumeAttributesClass`,
    );
  }

  const { accessMode, volumeMode, fsType } = kindFromCapabilities(request.volume_capabilities);
  const parameters = classParameters(request.parameters, fsType);
  checkCombination(accessMode, volumeMode, parameters.migratable);
  const capacity = capacityOf(request.capacity_range);
  return {
    name: request.name,
    sizeBytes: sizeFor(capacity),
    capacity,
    accessMode,
    volumeMode,
    parameters,
    topology: {
      requisite: request.accessibility_requirements?.requisite ?? [],
      preferred: request.accessibility_requirements?.preferred ?? [],
    },
  };
}

/** The spec of the Volume resource the handler creates for a plan. */
export function volumeSpecFor(plan: CreateVolumePlan): VolumeSpec {
  const { parameters } = plan;
  return {
    sizeBytes: plan.sizeBytes,
    numberOfReplicas: parameters.numberOfReplicas,
    accessMode: plan.accessMode,
    volumeMode: plan.volumeMode,
    migratable: parameters.migratable,
    ...(plan.volumeMode === 'Filesystem' ? { fsType: parameters.fsType } : {}),
    staleReplicaTimeoutSeconds: parameters.staleReplicaTimeoutSeconds,
    engines: [],
  };
}

// ---------------------------------------------------------------------------
// Capabilities → access mode, volume mode, fs_type.

function kindFromCapabilities(capabilities: readonly CsiVolumeCapability[] | null | undefined): {
  accessMode: AccessMode;
  volumeMode: VolumeMode;
  fsType: string | undefined;
} {
  if (!capabilities || capabilities.length === 0)
    throw invalidArgument('volume_capabilities is empty; give the access type and access mode');
  const parsed = capabilities.map(parseCapability);
  const accessModes = parsed.map((cap, index) => {
    const mode = CREATE_ACCESS_MODES[cap.mode];
    if (mode) return mode;
    throw invalidArgument(
      `volume_capabilities[${index}]: access mode ${cap.mode} is not served for a new volume (Tandem volumes start empty, so a read-only one would stay empty; use a writable mode and mount it read-only). Legal on Tandem: ${LEGAL_COMBINATIONS}`,
    );
  });
  const distinct = <T>(values: T[]) => [...new Set(values)];
  const modes = distinct(accessModes);
  if (modes.length > 1) {
    throw invalidArgument(
      `volume_capabilities ask for ${modes.join(' and ')} at once; ask for exactly one access mode. Legal on Tandem: ${LEGAL_COMBINATIONS}`,
    );
  }
  const volumeModes = distinct(parsed.map((cap) => cap.volumeMode));
  if (volumeModes.length > 1)
    throw invalidArgument('volume_capabilities mix block and mount access; a volume is one or the other');
  const fsTypes = distinct(parsed.flatMap((cap) => (cap.fsType === undefined ? [] : [cap.fsType])));
  if (fsTypes.length > 1)
    throw invalidArgument(`volume_capabilities ask for fs_type ${fsTypes.join(' and ')}; give one`);
  const [accessMode] = modes;
  const [volumeMode] = volumeModes;
  if (!accessMode || !volumeMode) throw new Error('unreachable: capabilities were checked to be non-empty');
  return { accessMode, volumeMode, fsType: fsTypes[0] };
}

/**
 * Parses the class parameters after dropping external-provisioner's keys;
 * fsType comes from the class's own `fsType` or else from the capability
 * (where csi.storage.k8s.io/fstype ends up), and the two must agree.
 */
function classParameters(
  raw: Record<string, string> | null | undefined,
  capabilityFsType: string | undefined,
): TandemClassParameters {
  const own = Object.fromEntries(
    Object.entries(raw ?? {}).filter(([key]) => !key.startsWith(PROVISIONER_PREFIX)),
  );
  const parsed = parseStorageClassParameters(own);
  if (!parsed.ok) throw invalidArgument(`invalid StorageClass parameters: ${parsed.errors.join('; ')}`);
  const value = parsed.value;
  if (capabilityFsType === undefined) return value;
  if (capabilityFsType !== 'ext4' && capabilityFsType !== 'xfs') {
    throw invalidArgument(
      `fs_type "${capabilityFsType}" (the class's csi.storage.k8s.io/fstype, or the provisioner's default) is not supported; allowed: ext4 or xfs`,
    );
  }
  if (Object.hasOwn(own, 'fsType') && value.fsType !== capabilityFsType) {
    throw invalidArgument(
      `fsType: "${value.fsType}" disagrees with the capability's fs_type "${capabilityFsType}" (csi.storage.k8s.io/fstype or the provisioner's default); allowed: the same filesystem in both, or only one of them`,
    );
  }
  return { ...value, fsType: capabilityFsType };
}

/** The design's volume-kind table; anything outside it is refused with the legal list. */
function checkCombination(accessMode: AccessMode, volumeMode: VolumeMode, migratable: boolean): void {
  const what = `${accessMode} + ${volumeMode} with migratable: "${migratable}"`;
  const refuse = (why: string) =>
    invalidArgument(`${what} is not legal: ${why}. Legal on Tandem: ${LEGAL_COMBINATIONS}`);
  if (migratable && !(accessMode === 'ReadWriteMany' && volumeMode === 'Block')) {
    throw refuse(
      accessMode === 'ReadWriteMany'
        ? 'a ReadWriteMany Filesystem volume is served over NFS and cannot be migratable; use a class without migratable: "true"'
        : 'a migratable class serves only ReadWriteMany + Block; use a class without migratable: "true", or ask for ReadWriteMany + Block',
    );
  }
  if (!migratable && accessMode === 'ReadWriteMany' && volumeMode === 'Block') {
    throw refuse('ReadWriteMany Block is the live-migration case and needs a class with migratable: "true"');
  }
}

// ---------------------------------------------------------------------------
// Capacity.

function int64(field: string, value: CsiInt64 | undefined): number {
  if (value === undefined || value === '') return 0;
  const text = String(value);
  if (!/^-?[0-9]+$/.test(text)) throw invalidArgument(`capacity_range.${field}: "${text}" is not an integer`);
  const big = BigInt(text);
  if (big < 0n) throw invalidArgument(`capacity_range.${field}: ${text} is negative`);
  // Anything this large is refused below anyway; clamping keeps the number exact enough to say so.
  return big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER + 1 : Number(big);
}

function capacityOf(range: CsiCapacityRange | null | undefined): CreateVolumePlan['capacity'] {
  return {
    requiredBytes: int64('required_bytes', range?.required_bytes),
    limitBytes: int64('limit_bytes', range?.limit_bytes),
  };
}

const roundUp = (bytes: number) => Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES;
const roundDown = (bytes: number) => Math.floor(bytes / BLOCK_BYTES) * BLOCK_BYTES;
const SIZE_RULE = `Tandem sizes are whole ${BLOCK_BYTES}-byte blocks, from ${formatBytes(MIN_VOLUME_BYTES)} to ${MAX_VOLUME_BYTES} bytes`;

/**
 * The size to create: required_bytes rounded up to whole blocks (and to the
 * minimum); with only a limit, the default size or the limit rounded down,
 * whichever is smaller; with neither, the default.
 */
function sizeFor({ requiredBytes: required, limitBytes: limit }: CreateVolumePlan['capacity']): number {
  if (limit > 0 && required > limit)
    throw outOfRange(`capacity_range: required_bytes ${required} is more than limit_bytes ${limit}`);
  if (required > MAX_VOLUME_BYTES)
    throw outOfRange(`capacity_range: required_bytes ${required} is too large; ${SIZE_RULE}`);
  if (required === 0 && limit > 0) {
    const size = Math.min(DEFAULT_VOLUME_BYTES, roundDown(limit));
    if (size < MIN_VOLUME_BYTES)
      throw outOfRange(`capacity_range: limit_bytes ${limit} leaves no room for a volume; ${SIZE_RULE}`);
    return size;
  }
  const size = required === 0 ? DEFAULT_VOLUME_BYTES : roundUp(Math.max(required, MIN_VOLUME_BYTES));
  if (limit > 0 && size > limit) {
    throw outOfRange(
      `capacity_range: required_bytes ${required} rounds up to ${size}, more than limit_bytes ${limit}; ${SIZE_RULE}, so allow a limit of at least ${size}`,
    );
  }
  return size;
}

// ---------------------------------------------------------------------------
// Idempotency.

/**
 * Whether an existing Volume of the same name answers this request: a retry
 * (the sidecar timed out, the controller restarted) must get the same volume,
 * while the same name with other arguments is ALREADY_EXISTS, saying what
 * differs. The size need only fit the requested range, so a volume expanded
 * since still matches its original request. Topology is not compared: a
 * retry may carry another preferred node (the scheduler picked again), and
 * the replicas already placed stay where they are.
 */
export function sameVolume(existing: Volume, plan: CreateVolumePlan): true {
  const spec = existing.spec;
  const want = volumeSpecFor(plan);
  const differences: string[] = [];
  const { requiredBytes, limitBytes } = plan.capacity;
  if (spec.sizeBytes < requiredBytes || (limitBytes > 0 && spec.sizeBytes > limitBytes)) {
    const range = [
      requiredBytes > 0 ? `at least ${requiredBytes}` : '',
      limitBytes > 0 ? `at most ${limitBytes}` : '',
    ].filter(Boolean);
    differences.push(`sizeBytes is ${spec.sizeBytes}, the request asks for ${range.join(' and ')}`);
  }
  const compare = (field: string, has: unknown, wants: unknown) => {
    if (has !== wants) differences.push(`${field} is ${String(has)}, the request asks for ${String(wants)}`);
  };
  compare('accessMode', spec.accessMode, want.accessMode);
  compare('volumeMode', spec.volumeMode, want.volumeMode);
  // The CRD defaults migratable to false.
  compare('migratable', spec.migratable ?? false, want.migratable);
  compare('numberOfReplicas', spec.numberOfReplicas, want.numberOfReplicas);
  compare('staleReplicaTimeoutSeconds', spec.staleReplicaTimeoutSeconds, want.staleReplicaTimeoutSeconds);
  if (want.volumeMode === 'Filesystem' && spec.volumeMode === 'Filesystem')
    compare('fsType', spec.fsType, want.fsType);
  if (differences.length > 0) {
    throw alreadyExists(
      `volume ${existing.metadata.name} already exists with other arguments: ${differences.join('; ')}`,
    );
  }
  return true;
}
