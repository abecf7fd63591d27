import type { AccessMode, Volume, VolumeMode } from '../../lib/api/volume.js';
import { invalidArgument } from '../csi/errors.js';

// ---------------------------------------------------------------------------
// VolumeCapability as @grpc/proto-loader decodes it (keepCase, enums as
// strings, oneofs: `access_type` names the member that is set, absent
// messages are null).

export type CsiAccessMode =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

export interface CsiMountVolume {
  fs_type?: string;
  mount_flags?: string[];
  volume_mount_group?: string;
}

export interface CsiVolumeCapability {
  block?: Record<string, never> | null;
  mount?: CsiMountVolume | null;
  access_type?: 'block' | 'mount';
  /** A string for enum names the proto file may gain later; checked at run time. */
  access_mode?: { mode?: CsiAccessMode | string } | null;
}

/** One capability, checked for form: what it asks of the volume. */
export interface ParsedCapability {
  mode: CsiAccessMode;
  volumeMode: VolumeMode;
  /** The mount's fs_type; undefined when empty or for block access. */
  fsType: string | undefined;
}

const KNOWN_MODES: readonly CsiAccessMode[] = [
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'MULTI_NODE_READER_ONLY',
  'MULTI_NODE_SINGLE_WRITER',
  'MULTI_NODE_MULTI_WRITER',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
];

/**
 * The form of one capability: an access type and a known access mode. A
 * malformed capability is INVALID_ARGUMENT (the caller's mistake); a
 * well-formed one Tandem does not serve is decided by the caller.
 */
export function parseCapability(capability: CsiVolumeCapability, index: number): ParsedCapability {
  const where = `volume_capabilities[${index}]`;
  const type =
    capability.access_type ?? (capability.block ? 'block' : capability.mount ? 'mount' : undefined);
  if (type !== 'block' && type !== 'mount')
    throw invalidArgument(`${where}: access_type is not set; set either block or mount`);
  const mode = capability.access_mode?.mode;
  if (mode === undefined || mode === '' || mode === 'UNKNOWN')
    throw invalidArgument(`${where}: access_mode is not set`);
  const known = KNOWN_MODES.find((m) => m === mode);
  if (!known) throw invalidArgument(`${where}: access_mode ${mode} is not a CSI access mode`);
  const fsType = type === 'mount' ? capability.mount?.fs_type || undefined : undefined;
  return { mode: known, volumeMode: type === 'mount' ? 'Filesystem' : 'Block', fsType };
}

/**
 * The access mode a new volume gets for a requested CSI mode. Kubernetes
 * sends, because both services advertise SINGLE_NODE_MULTI_WRITER:
 * ReadWriteOnce → SINGLE_NODE_MULTI_WRITER, ReadWriteOncePod →
 * SINGLE_NODE_SINGLE_WRITER, ReadWriteMany → MULTI_NODE_MULTI_WRITER,
 * ReadOnlyMany → MULTI_NODE_READER_ONLY. SINGLE_NODE_WRITER (what other COs
 * and csi-sanity send) has ReadWriteOnce's meaning.
 *
 * Reader-only modes are refused for a new volume: Tandem creates volumes
 * empty (no snapshot or clone source), so a volume nobody may write would
 * hold nothing, and the design has no read-only kind. Using a writable
 * volume read-only is a publish option (`readonly`), not a kind of volume.
 * MULTI_NODE_SINGLE_WRITER has no Kubernetes access mode and no kind either.
 */
export const CREATE_ACCESS_MODES: Readonly<Partial<Record<CsiAccessMode, AccessMode>>> = {
  SINGLE_NODE_WRITER: 'ReadWriteOnce',
  SINGLE_NODE_MULTI_WRITER: 'ReadWriteOnce',
  SINGLE_NODE_SINGLE_WRITER: 'ReadWriteOncePod',
  MULTI_NODE_MULTI_WRITER: 'ReadWriteMany',
};

const SINGLE_NODE: readonly CsiAccessMode[] = [
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_READER_ONLY',
];

/**
 * The CSI modes an existing volume can be published with: its own mode and
 * the weaker ones it honours.
 * - ReadWriteOnce: every single-node mode (one writer or readers only are
 *   narrower uses of "any pods on one node").
 * - ReadWriteOncePod: one writer or readers on one node.
 * - ReadWriteMany Filesystem: every mode; an NFS export serves any number of
 *   readers and writers on any nodes.
 * - ReadWriteMany Block (migratable): MULTI_NODE_MULTI_WRITER only. It exists
 *   for the pods of one VM during a live migration; other modes would promise
 *   uses (readers on any node) that ControllerPublishVolume refuses.
 */
export function servedModes(spec: Volume['spec']): readonly CsiAccessMode[] {
  switch (spec.accessMode) {
    case 'ReadWriteOnce':
      return SINGLE_NODE;
    case 'ReadWriteOncePod':
      return ['SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_READER_ONLY'];
    case 'ReadWriteMany':
      return spec.volumeMode === 'Filesystem' ? KNOWN_MODES : ['MULTI_NODE_MULTI_WRITER'];
  }
}

export interface ValidateConfirmed {
  volume_context: Record<string, string>;
  volume_capabilities: CsiVolumeCapability[];
  parameters: Record<string, string>;
  mutable_parameters: Record<string, string>;
}

export interface ValidateResult {
  /** Set when every capability is served; unset means "not confirmed", which is not an error in CSI. */
  confirmed?: ValidateConfirmed;
  message: string;
}

/**
 * ValidateVolumeCapabilities for an existing volume: confirmed only when the
 * volume serves every capability asked for. Confirmed echoes the
 * capabilities only: volume_context and parameters are optional there, and
 * echoing them would claim they were checked. No capabilities, or a
 * malformed one, is INVALID_ARGUMENT, as the spec (and csi-sanity) expect.
 */
export function validateVolumeCapabilities(
  capabilities: readonly CsiVolumeCapability[] | null | undefined,
  volume: Volume,
): ValidateResult {
  if (!capabilities || capabilities.length === 0)
    throw invalidArgument('volume_capabilities is empty; give at least one capability to validate');
  const parsed = capabilities.map(parseCapability);
  const spec = volume.spec;
  const served = servedModes(spec);
  const kind = `${spec.accessMode} ${spec.volumeMode}${spec.migratable ? ' (migratable)' : ''}`;
  const problems: string[] = [];
  parsed.forEach((cap, index) => {
    const where = `volume_capabilities[${index}]`;
    if (cap.volumeMode !== spec.volumeMode) {
      const access = cap.volumeMode === 'Block' ? 'block' : 'mount';
      problems.push(`${where}: ${access} access needs volumeMode ${cap.volumeMode}`);
    }
    if (!served.includes(cap.mode))
      problems.push(`${where}: access mode ${cap.mode} is not served (it serves ${served.join(', ')})`);
    if (cap.fsType !== undefined && spec.fsType !== undefined && cap.fsType !== spec.fsType)
      problems.push(`${where}: fs_type ${cap.fsType} differs from the volume's ${spec.fsType}`);
  });
  if (problems.length > 0)
    return { message: `volume ${volume.metadata.name} is ${kind}: ${problems.join('; ')}` };
  return {
    confirmed: {
      volume_context: {},
      volume_capabilities: [...capabilities],
      parameters: {},
      mutable_parameters: {},
    },
    message: '',
  };
}

// ---------------------------------------------------------------------------
// Service capabilities. Each one is a promise the sidecars and kubelet act
// on, so each is listed (or left out) for a reason.

export type ControllerCapability =
  | 'CREATE_DELETE_VOLUME'
  | 'PUBLISH_UNPUBLISH_VOLUME'
  | 'LIST_VOLUMES'
  | 'LIST_VOLUMES_PUBLISHED_NODES'
  | 'GET_CAPACITY'
  | 'EXPAND_VOLUME'
  | 'GET_VOLUME'
  | 'VOLUME_CONDITION'
  | 'SINGLE_NODE_MULTI_WRITER';

export const CONTROLLER_CAPABILITIES: readonly ControllerCapability[] = Object.freeze([
  // Dynamic provisioning: a Volume resource per PV.
  'CREATE_DELETE_VOLUME',
  // ControllerPublishVolume is where the engine is placed on the pod's node,
  // a live migration starts, and pod identity is checked again (DESIGN:
  // defence in depth); without it external-attacher would skip all of that.
  'PUBLISH_UNPUBLISH_VOLUME',
  // Answered from the Volume informer cache; external-attacher and the health
  // monitor use it, and csi-sanity checks it.
  'LIST_VOLUMES',
  // The engines' nodes (two during a migration): external-attacher reconciles
  // VolumeAttachments against these, which catches an engine lost by a crash.
  'LIST_VOLUMES_PUBLISHED_NODES',
  // GetCapacity answers for the cluster as a whole (engines reach replicas
  // over the network, so a node's own disk says nothing about whether a pod
  // there can get a volume). The manifests leave the provisioner's capacity
  // tracking off for that reason; the call serves monitoring and csi-sanity.
  'GET_CAPACITY',

  // Identity advertises ONLINE expansion; the resizer needs this to call us.
  'EXPAND_VOLUME',
  // ControllerGetVolume and VOLUME_CONDITION report `robustness` (Degraded,
  // Faulted) to the external health monitor, which turns it into PVC events.
  'GET_VOLUME',
  'VOLUME_CONDITION',
  // Lets Kubernetes tell ReadWriteOncePod (SINGLE_NODE_SINGLE_WRITER) from
  // ReadWriteOnce (SINGLE_NODE_MULTI_WRITER); without it both arrive as
  // SINGLE_NODE_WRITER and a Volume could not record ReadWriteOncePod. The
  // node service must say the same (kubelet checks it there).
  'SINGLE_NODE_MULTI_WRITER',
  // Left out: snapshots, CLONE_VOLUME (content sources are refused),
  // PUBLISH_READONLY (read-only is applied at NodePublish), MODIFY_VOLUME
  // (no mutable parameters), GET_SNAPSHOT.
]);

export type NodeCapability =
  | 'STAGE_UNSTAGE_VOLUME'
  | 'GET_VOLUME_STATS'
  | 'EXPAND_VOLUME'
  | 'VOLUME_CONDITION'
  | 'SINGLE_NODE_MULTI_WRITER';

export const NODE_CAPABILITIES: readonly NodeCapability[] = Object.freeze([
  // One NBD connection and one filesystem mount per node (staging), then a
  // bind mount per pod: several pods on one node share the device, and a
  // formatted filesystem is never mounted twice.
  'STAGE_UNSTAGE_VOLUME',
  // Capacity and usage for kubelet's volume metrics and eviction.
  'GET_VOLUME_STATS',
  // Grows the filesystem (resize2fs, xfs_growfs) after ControllerExpandVolume.
  'EXPAND_VOLUME',
  // NodeGetVolumeStats reports a lost engine connection or a missing mount.
  'VOLUME_CONDITION',
  // Must match the controller's, or kubelet and the sidecars map modes differently.
  'SINGLE_NODE_MULTI_WRITER',
  // Left out: VOLUME_MOUNT_GROUP; kubelet applies fsGroup itself.
]);

export function controllerGetCapabilities(): { capabilities: { rpc: { type: ControllerCapability } }[] } {
  return { capabilities: CONTROLLER_CAPABILITIES.map((type) => ({ rpc: { type } })) };
}

export function nodeGetCapabilities(): { capabilities: { rpc: { type: NodeCapability } }[] } {
  return { capabilities: NODE_CAPABILITIES.map((type) => ({ rpc: { type } })) };
}
