// The Volume spec a plan creates, and the idempotency check against an existing Volume.
import { status } from '@grpc/grpc-js';
import { newVolume, type VolumeSpec } from '../../lib/api/volume.js';
import {
  blockCapability,
  createVolumeRequest,
  mountCapability,
  refusal,
} from '../../test/harness/csi-requests.js';
import {
  type CreateVolumePlan,
  type CreateVolumeRequest,
  planCreateVolume,
  sameVolume,
  volumeSpecFor,
} from './create-volume.js';

const GiB = 1024 ** 3;

const _mount = mountCapability;
const block = blockCapability;

const request = createVolumeRequest;

const MIGRATABLE = { migratable: 'true' };

describe('volumeSpecFor', () => {
  it('a Filesystem volume records its fsType', () => {
    const plan = planCreateVolume(
      request({ parameters: { numberOfReplicas: '2', staleReplicaTimeout: '1h' } }),
    );
    expect(volumeSpecFor(plan)).toEqual({
      sizeBytes: 2 * GiB,
      numberOfReplicas: 2,
      accessMode: 'ReadWriteOnce',
      volumeMode: 'Filesystem',
      migratable: false,
      fsType: 'ext4',
      staleReplicaTimeoutSeconds: 3600,
      engines: [],
    });
  });

  it('a Block volume has none', () => {
    const plan = planCreateVolume(
      request({ volume_capabilities: [block('MULTI_NODE_MULTI_WRITER')], parameters: MIGRATABLE }),
    );
    expect(volumeSpecFor(plan)).not.toHaveProperty('fsType');
    expect(volumeSpecFor(plan).migratable).toBe(true);
  });
});

describe('sameVolume', () => {
  const plan = (overrides: Partial<CreateVolumeRequest> = {}): CreateVolumePlan =>
    planCreateVolume(request(overrides));
  const existing = (spec: Partial<VolumeSpec> = {}) =>
    newVolume('pvc-1', { ...volumeSpecFor(plan()), ...spec });

  const same: [string, Partial<VolumeSpec>, Partial<CreateVolumeRequest>][] = [
    ['the same request', {}, {}],
    ['expanded since', { sizeBytes: 8 * GiB }, {}],
    ['the range fits', {}, { capacity_range: { required_bytes: String(GiB), limit_bytes: String(4 * GiB) } }],
    ['no range asked', { sizeBytes: 5 * GiB }, { capacity_range: null }],
    ['migratable left to the CRD default', { migratable: undefined }, {}],
    ['other topology', {}, { accessibility_requirements: { preferred: [{ segments: { k: 'v' } }] } }],
    ['engines and status do not matter', { engines: [{ node: 'a' }] }, {}],
  ];
  it.each(same)('matches: %s', (_name, spec, overrides) => {
    expect(sameVolume(existing(spec), plan(overrides))).toBe(true);
  });

  const differs: [string, Partial<VolumeSpec>, Partial<CreateVolumeRequest>, RegExp][] = [
    [
      'too small',
      {},
      { capacity_range: { required_bytes: String(3 * GiB), limit_bytes: '0' } },
      /sizeBytes is 2147483648, the request asks for at least 3221225472/,
    ],
    [
      'too large for the limit',
      { sizeBytes: 8 * GiB },
      { capacity_range: { required_bytes: String(GiB), limit_bytes: String(4 * GiB) } },
      /asks for at least 1073741824 and at most 4294967296/,
    ],
    [
      'another access mode',
      { accessMode: 'ReadWriteOncePod' },
      {},
      /accessMode is ReadWriteOncePod, the request asks for ReadWriteOnce/,
    ],
    ['another volume mode', { volumeMode: 'Block', fsType: undefined }, {}, /volumeMode is Block/],
    [
      'another replica count',
      {},
      { parameters: { numberOfReplicas: '2' } },
      /numberOfReplicas is 3, the request asks for 2/,
    ],
    [
      'another stale timeout',
      {},
      { parameters: { staleReplicaTimeout: '1h' } },
      /staleReplicaTimeoutSeconds is 172800/,
    ],
    ['another fsType', {}, { parameters: { fsType: 'xfs' } }, /fsType is ext4, the request asks for xfs/],
    [
      'migratable differs',
      { accessMode: 'ReadWriteMany', volumeMode: 'Block', fsType: undefined, migratable: false },
      { volume_capabilities: [block('MULTI_NODE_MULTI_WRITER')], parameters: MIGRATABLE },
      /migratable is false, the request asks for true/,
    ],
  ];
  it.each(differs)('ALREADY_EXISTS: %s', (_name, spec, overrides, message) => {
    const error = refusal(() => sameVolume(existing(spec), plan(overrides)));
    expect(error.code).toBe(status.ALREADY_EXISTS);
    expect(error.message).toMatch(/^volume pvc-1 already exists with other arguments: /);
    expect(error.message).toMatch(message);
  });

  it('names every difference at once', () => {
    const error = refusal(() =>
      sameVolume(existing({ numberOfReplicas: 1, accessMode: 'ReadWriteOncePod' }), plan()),
    );
    expect(error.message).toMatch(/accessMode .*; numberOfReplicas/);
  });
});
