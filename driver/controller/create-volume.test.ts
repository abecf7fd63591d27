import { status } from '@grpc/grpc-js';
import {
  blockCapability,
  createVolumeRequest,
  mountCapability,
  refusal,
} from '../../test/harness/csi-requests.js';
import type { CsiVolumeCapability } from './capabilities.js';
import { type CreateVolumeRequest, DEFAULT_VOLUME_BYTES, planCreateVolume } from './create-volume.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

const mount = mountCapability;
const block = blockCapability;

const request = createVolumeRequest;

const MIGRATABLE = { migratable: 'true' };

describe('planCreateVolume: the volume-kind table', () => {
  const legal: [CsiVolumeCapability[], Record<string, string>, string, string][] = [
    [[mount('SINGLE_NODE_WRITER')], {}, 'ReadWriteOnce', 'Filesystem'],
    [[mount('SINGLE_NODE_MULTI_WRITER')], {}, 'ReadWriteOnce', 'Filesystem'],
    [[mount('SINGLE_NODE_SINGLE_WRITER')], {}, 'ReadWriteOncePod', 'Filesystem'],
    [[block('SINGLE_NODE_WRITER')], {}, 'ReadWriteOnce', 'Block'],
    [[block('SINGLE_NODE_MULTI_WRITER')], {}, 'ReadWriteOnce', 'Block'],
    [[block('SINGLE_NODE_SINGLE_WRITER')], { migratable: 'false' }, 'ReadWriteOncePod', 'Block'],
    [[mount('MULTI_NODE_MULTI_WRITER')], {}, 'ReadWriteMany', 'Filesystem'],
    [[mount('MULTI_NODE_MULTI_WRITER')], { migratable: 'false' }, 'ReadWriteMany', 'Filesystem'],
    [[block('MULTI_NODE_MULTI_WRITER')], MIGRATABLE, 'ReadWriteMany', 'Block'],
    // Two spellings of ReadWriteOnce together are still one access mode.
    [[mount('SINGLE_NODE_WRITER'), mount('SINGLE_NODE_MULTI_WRITER')], {}, 'ReadWriteOnce', 'Filesystem'],
  ];
  it.each(legal)('%j with %j is %s %s', (capabilities, parameters, accessMode, volumeMode) => {
    const plan = planCreateVolume(request({ volume_capabilities: capabilities, parameters }));
    expect(plan.accessMode).toBe(accessMode);
    expect(plan.volumeMode).toBe(volumeMode);
  });

  const illegal: [string, CsiVolumeCapability[], Record<string, string>, RegExp][] = [
    ['RWX Block, not migratable', [block('MULTI_NODE_MULTI_WRITER')], {}, /needs a class with migratable/],
    [
      'RWX Filesystem, migratable',
      [mount('MULTI_NODE_MULTI_WRITER')],
      MIGRATABLE,
      /served over NFS and cannot be migratable/,
    ],
    ['RWO Block, migratable', [block('SINGLE_NODE_WRITER')], MIGRATABLE, /migratable class serves only/],
    ['RWO Filesystem, migratable', [mount('SINGLE_NODE_MULTI_WRITER')], MIGRATABLE, /migratable class/],
    ['RWOP Block, migratable', [block('SINGLE_NODE_SINGLE_WRITER')], MIGRATABLE, /migratable class/],
    ['ReadOnlyMany', [mount('MULTI_NODE_READER_ONLY')], {}, /MULTI_NODE_READER_ONLY is not served/],
    ['single-node reader', [block('SINGLE_NODE_READER_ONLY')], {}, /read-only one would stay empty/],
    ['multi-node single writer', [mount('MULTI_NODE_SINGLE_WRITER')], {}, /not served for a new volume/],
    [
      'RWO + ROX (two claim access modes)',
      [mount('SINGLE_NODE_MULTI_WRITER'), mount('MULTI_NODE_READER_ONLY')],
      {},
      /MULTI_NODE_READER_ONLY is not served/,
    ],
    [
      'RWO + RWX',
      [mount('SINGLE_NODE_MULTI_WRITER'), mount('MULTI_NODE_MULTI_WRITER')],
      {},
      /ReadWriteOnce and ReadWriteMany at once; ask for exactly one/,
    ],
    [
      'block and mount',
      [block('SINGLE_NODE_WRITER'), mount('SINGLE_NODE_WRITER')],
      {},
      /mix block and mount/,
    ],
    ['no capabilities', [], {}, /volume_capabilities is empty/],
    [
      'no access type',
      [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
      {},
      /volume_capabilities\[0\]: access_type is not set/,
    ],
    [
      'no access mode',
      [{ block: {}, access_type: 'block', access_mode: null }],
      {},
      /access_mode is not set/,
    ],
    ['UNKNOWN access mode', [block('UNKNOWN')], {}, /access_mode is not set/],
    [
      'an access mode from a later spec',
      [{ block: {}, access_type: 'block', access_mode: { mode: 'SOMETHING_NEW' } }],
      {},
      /SOMETHING_NEW is not a CSI access mode/,
    ],
  ];
  it.each(illegal)('refuses %s', (_name, capabilities, parameters, message) => {
    const error = refusal(() => planCreateVolume(request({ volume_capabilities: capabilities, parameters })));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.message).toMatch(message);
  });

  it('a refused combination lists the legal ones', () => {
    const error = refusal(() =>
      planCreateVolume(request({ volume_capabilities: [block('MULTI_NODE_MULTI_WRITER')] })),
    );
    expect(error.message).toMatch(/ReadWriteMany \+ Block with migratable: "false" is not legal/);
    expect(error.message).toMatch(/Legal on Tandem: ReadWriteOnce or ReadWriteOncePod/);
    expect(error.message).toMatch(/ReadWriteMany with volumeMode Block \(class with migratable: "true"\)/);
  });

  it('accepts a capability whose oneof name is missing (built by hand, not by proto-loader)', () => {
    const plan = planCreateVolume(
      request({ volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }] }),
    );
    expect(plan.volumeMode).toBe('Block');
  });
});

describe('planCreateVolume: capacity', () => {
  const range = (required: string | number, limit: string | number = '0') => ({
    capacity_range: { required_bytes: required, limit_bytes: limit },
  });
  const sizes: [string, Partial<CreateVolumeRequest>, number][] = [
    ['no range: the default', { capacity_range: null }, DEFAULT_VOLUME_BYTES],
    ['zeros: the default', range('0', '0'), DEFAULT_VOLUME_BYTES],
    ['empty strings: the default', range('', ''), DEFAULT_VOLUME_BYTES],
    ['a whole number of blocks', range(String(10 * GiB)), 10 * GiB],
    ['rounded up to 4 KiB', range(String(10 * MiB + 1)), 10 * MiB + 4096],
    ['numbers accepted too', range(5 * MiB), 5 * MiB],
    ['below the minimum: 1 MiB', range('1'), MiB],
    ['required equal to limit', range(String(3 * GiB), String(3 * GiB)), 3 * GiB],
    ['rounding up within the limit', range(String(MiB + 1), String(MiB + 8192)), MiB + 4096],
    ['only a limit above the default: the default', range('0', String(5 * GiB)), DEFAULT_VOLUME_BYTES],
    ['only a small limit: the limit, rounded down', range('0', String(100 * MiB + 123)), 100 * MiB],
    ['the largest size', range(String(2 ** 53 - 4096)), 2 ** 53 - 4096],
  ];
  it.each(sizes)('%s', (_name, overrides, expected) => {
    expect(planCreateVolume(request(overrides)).sizeBytes).toBe(expected);
  });

  it('keeps the requested range for the idempotency check', () => {
    expect(planCreateVolume(request(range(String(GiB), String(2 * GiB)))).capacity).toEqual({
      requiredBytes: GiB,
      limitBytes: 2 * GiB,
    });
  });

  const refused: [string, Partial<CreateVolumeRequest>, status, RegExp][] = [
    [
      'limit below required',
      range(String(2 * GiB), String(GiB)),
      status.OUT_OF_RANGE,
      /required_bytes 2147483648 is more than limit_bytes 1073741824/,
    ],
    [
      'rounding up passes the limit',
      range('5000', '6000'),
      status.OUT_OF_RANGE,
      /rounds up to 1048576, more than limit_bytes 6000/,
    ],
    [
      'rounding to a block passes the limit',
      range(String(MiB + 1), String(MiB + 100)),
      status.OUT_OF_RANGE,
      /allow a limit of at least 1052672/,
    ],
    ['a limit below the minimum', range('0', '4096'), status.OUT_OF_RANGE, /leaves no room/],
    ['too large', range('9223372036854775807'), status.OUT_OF_RANGE, /too large/],
    ['just past the largest', range(String(2 ** 53)), status.OUT_OF_RANGE, /too large/],
    ['negative required', range('-1'), status.INVALID_ARGUMENT, /required_bytes: -1 is negative/],
    ['negative limit', range('0', '-5'), status.INVALID_ARGUMENT, /limit_bytes: -5 is negative/],
    ['not a number', range('1Gi'), status.INVALID_ARGUMENT, /"1Gi" is not an integer/],
  ];
  it.each(refused)('refuses %s', (_name, overrides, code, message) => {
    const error = refusal(() => planCreateVolume(request(overrides)));
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
  });
});

describe('planCreateVolume: parameters', () => {
  it('defaults when the class has none', () => {
    expect(planCreateVolume(request()).parameters).toEqual(
      expect.objectContaining({ numberOfReplicas: 3, migratable: false, fsType: 'ext4' }),
    );
  });

  it("strips external-provisioner's keys before parsing", () => {
    const plan = planCreateVolume(
      request({
        parameters: {
          numberOfReplicas: '2',
          'csi.storage.k8s.io/pvc/name': 'data',
          'csi.storage.k8s.io/pvc/namespace': 'default',
          'csi.storage.k8s.io/pv/name': 'pvc-1',
          'csi.storage.k8s.io/anything-later': 'x',
        },
      }),
    );
    expect(plan.parameters.numberOfReplicas).toBe(2);
  });

  const refused: [string, Record<string, string>, RegExp][] = [
    ['an unknown key', { numberOfReplica: '2' }, /did you mean "numberOfReplicas"/],
    ['a malformed value', { numberOfReplicas: '9' }, /numberOfReplicas: 9 is out of range/],
    ['several problems at once', { migratable: 'yes', fsType: 'btrfs' }, /migratable: .*; fsType: /],
    ['fsType on a migratable class', { migratable: 'true', fsType: 'xfs' }, /no effect on a migratable/],
  ];
  it.each(refused)("refuses %s with lib/params' message", (_name, parameters, message) => {
    const error = refusal(() => planCreateVolume(request({ parameters })));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.message).toMatch(/^invalid StorageClass parameters: /);
    expect(error.message).toMatch(message);
  });

  const fsTypes: [string, string, Record<string, string>, string | RegExp][] = [
    ['class only', '', { fsType: 'xfs' }, 'xfs'],
    ['capability only (csi.storage.k8s.io/fstype)', 'xfs', {}, 'xfs'],
    ['both, agreeing', 'xfs', { fsType: 'xfs' }, 'xfs'],
    [
      'both, disagreeing',
      'ext4',
      { fsType: 'xfs' },
      /fsType: "xfs" disagrees with the capability's fs_type "ext4"/,
    ],
    ['an unsupported fs_type', 'btrfs', {}, /fs_type "btrfs" .* is not supported; allowed: ext4 or xfs/],
  ];
  it.each(fsTypes)('fsType: %s', (_name, fsType, parameters, expected) => {
    const req = request({ volume_capabilities: [mount('SINGLE_NODE_WRITER', fsType)], parameters });
    if (typeof expected === 'string') {
      expect(planCreateVolume(req).parameters.fsType).toBe(expected);
    } else {
      const error = refusal(() => planCreateVolume(req));
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(error.message).toMatch(expected);
    }
  });

  it('two mount capabilities with different fs_type are refused', () => {
    const error = refusal(() =>
      planCreateVolume(
        request({
          volume_capabilities: [mount('SINGLE_NODE_WRITER', 'ext4'), mount('SINGLE_NODE_WRITER', 'xfs')],
        }),
      ),
    );
    expect(error.message).toMatch(/fs_type ext4 and xfs/);
  });
});

describe('planCreateVolume: other fields', () => {
  const refused: [string, Partial<CreateVolumeRequest>, RegExp][] = [
    ['no name', { name: '' }, /name is empty/],
    [
      'a snapshot source',
      { volume_content_source: { snapshot: { snapshot_id: 's' }, volume: null, type: 'snapshot' } },
      /volume_content_source \(snapshot\) is not supported/,
    ],
    [
      'a clone source',
      { volume_content_source: { snapshot: null, volume: { volume_id: 'v' }, type: 'volume' } },
      /volume_content_source \(volume\) is not supported/,
    ],
    [
      'a clone source without the oneof name',
      { volume_content_source: { volume: { volume_id: 'v' } } },
      /volume\)/,
    ],
    [
      'mutable parameters',
      { mutable_parameters: { iops: '100' } },
      /mutable_parameters \(iops\) are not supported/,
    ],
  ];
  it.each(refused)('refuses %s', (_name, overrides, message) => {
    const error = refusal(() => planCreateVolume(request(overrides)));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.message).toMatch(message);
  });

  it('an empty content source message is no source', () => {
    const source = { snapshot: null, volume: null };
    expect(planCreateVolume(request({ volume_content_source: source })).name).toBe('pvc-1');
  });

  it('carries the topology, with [] for what is absent', () => {
    const preferred = [{ segments: { 'topology.csi.tandem.dev/node': 'a' } }];
    expect(planCreateVolume(request({ accessibility_requirements: { preferred } })).topology).toEqual({
      requisite: [],
      preferred,
    });
    expect(planCreateVolume(request()).topology).toEqual({ requisite: [], preferred: [] });
  });

  it('secrets are ignored', () => {
    expect(() => planCreateVolume(request({ secrets: { token: 'x' } }))).not.toThrow();
  });
});
