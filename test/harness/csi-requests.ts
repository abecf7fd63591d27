/**
 * CSI requests as @grpc/proto-loader delivers them to handlers (keepCase, defaults, oneofs,
 * int64 as strings), for the controller's unit tests.
 */
import type { CsiAccessMode, CsiVolumeCapability } from '../../driver/controller/capabilities.js';
import type { CreateVolumeRequest } from '../../driver/controller/create-volume.js';
import { CsiError } from '../../driver/csi/errors.js';

const GiB = 1024 ** 3;

export function mountCapability(mode: CsiAccessMode, fsType = ''): CsiVolumeCapability {
  return {
    mount: { fs_type: fsType, mount_flags: [], volume_mount_group: '' },
    access_type: 'mount',
    access_mode: { mode },
  };
}

export function blockCapability(mode: CsiAccessMode): CsiVolumeCapability {
  return { block: {}, access_type: 'block', access_mode: { mode } };
}

/** A valid 2 GiB RWO Filesystem CreateVolumeRequest named pvc-1, with `overrides` applied. */
export function createVolumeRequest(overrides: Partial<CreateVolumeRequest> = {}): CreateVolumeRequest {
  return {
    name: 'pvc-1',
    capacity_range: { required_bytes: String(2 * GiB), limit_bytes: '0' },
    volume_capabilities: [mountCapability('SINGLE_NODE_MULTI_WRITER')],
    parameters: {},
    secrets: {},
    volume_content_source: null,
    accessibility_requirements: null,
    mutable_parameters: {},
    ...overrides,
  };
}

/** The CsiError `fn` throws; fails the test when it throws something else or nothing. */
export function refusal(fn: () => unknown): CsiError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CsiError) return err;
    throw err;
  }
  throw new Error('expected a CsiError, but the call succeeded');
}
