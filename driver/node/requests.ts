/**
 * What every Node handler shares: its environment and the checks of request fields, with the
 * CSI error codes the spec (and csi-sanity) expect for a missing or malformed field.
 */
import { isAbsolute, resolve } from 'node:path';
import {
  type CsiAccessMode,
  type CsiVolumeCapability,
  type ParsedCapability,
  parseCapability,
} from '../controller/capabilities.js';
import { invalidArgument } from '../csi/errors.js';
import type { FsType } from './filesystem.js';
import type { NodeOps } from './node-ops.js';

export interface NodeEnv {
  nodeId: string;
  /** The node plugin's own state: `staged/` (stage records) and `devices/` (attachments). */
  stateDir: string;
  /** Where the data plane's engines listen (engineSocketPath). */
  engineSocketDir: string;
  /** How long NodeStageVolume waits for the engine's socket (at most; the call's deadline may cut it). */
  engineWaitMs: number;
  ops: NodeOps;
}

/** The volume_context key a StorageClass's fsType reaches the node by. */
export const FS_TYPE_CONTEXT_KEY = 'tandem.dev/fs-type';
export const DEFAULT_FS_TYPE: FsType = 'ext4';
const FS_TYPES: readonly FsType[] = ['ext4', 'xfs'];

/** Tandem volume ids name files and directories on the node (block-device.ts has the same rule). */
const VOLUME_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isTandemVolumeId(volumeId: string): boolean {
  return VOLUME_ID.test(volumeId);
}

export function requireVolumeId(value: string | undefined): string {
  if (!value) throw invalidArgument('volume_id is empty');
  return value;
}

/** A path field: set and absolute; returned normalised (as mountinfo shows it). */
export function requireAbsolutePath(field: string, value: string | undefined): string {
  if (!value) throw invalidArgument(`${field} is empty`);
  if (!isAbsolute(value)) throw invalidArgument(`${field} ${JSON.stringify(value)} is not an absolute path`);
  return resolve(value);
}

export function requireCapability(capability: CsiVolumeCapability | null | undefined): ParsedCapability {
  if (!capability) throw invalidArgument('volume_capability is not set');
  try {
    return parseCapability(capability, 0);
  } catch (err) {
    // parseCapability names the field of a list; here it is a single one.
    if (err instanceof Error)
      err.message = err.message.replace('volume_capabilities[0]', 'volume_capability');
    throw err;
  }
}

export function readerOnly(mode: CsiAccessMode): boolean {
  return mode === 'SINGLE_NODE_READER_ONLY' || mode === 'MULTI_NODE_READER_ONLY';
}

/** The filesystem of a mount capability: its fs_type, else the volume's, else ext4; only ext4 and xfs. */
export function resolveFsType(
  capabilityFsType: string | undefined,
  volumeContext: Record<string, string>,
): FsType {
  const wanted = capabilityFsType || volumeContext[FS_TYPE_CONTEXT_KEY] || DEFAULT_FS_TYPE;
  const found = FS_TYPES.find((t) => t === wanted);
  if (!found)
    throw invalidArgument(`fs_type ${wanted} is not supported; Tandem formats ${FS_TYPES.join(' or ')}`);
  return found;
}
