import { status } from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { newVolume, type VolumeSpec } from '../../lib/api/volume.js';
import { blockCapability, mountCapability } from '../../test/harness/csi-requests.js';
import { CsiError } from '../csi/errors.js';
import { csiProtoPath } from '../csi/proto.js';
import {
  CONTROLLER_CAPABILITIES,
  type CsiVolumeCapability,
  controllerGetCapabilities,
  NODE_CAPABILITIES,
  nodeGetCapabilities,
  parseCapability,
  servedModes,
  validateVolumeCapabilities,
} from './capabilities.js';

const GiB = 1024 ** 3;

const mount = mountCapability;
const block = blockCapability;

const specs: Record<string, VolumeSpec> = {
  rwoFs: {
    sizeBytes: GiB,
    numberOfReplicas: 3,
    accessMode: 'ReadWriteOnce',
    volumeMode: 'Filesystem',
    fsType: 'ext4',
  },
  rwoBlock: { sizeBytes: GiB, numberOfReplicas: 3, accessMode: 'ReadWriteOnce', volumeMode: 'Block' },
  rwopFs: {
    sizeBytes: GiB,
    numberOfReplicas: 3,
    accessMode: 'ReadWriteOncePod',
    volumeMode: 'Filesystem',
    fsType: 'xfs',
  },
  nfs: {
    sizeBytes: GiB,
    numberOfReplicas: 3,
    accessMode: 'ReadWriteMany',
    volumeMode: 'Filesystem',
    fsType: 'ext4',
  },
  migratable: {
    sizeBytes: GiB,
    numberOfReplicas: 3,
    accessMode: 'ReadWriteMany',
    volumeMode: 'Block',
    migratable: true,
  },
};
const volume = (kind: keyof typeof specs) => newVolume('pvc-1', specs[kind] as VolumeSpec);

describe('validateVolumeCapabilities', () => {
  const confirmed: [keyof typeof specs, CsiVolumeCapability[]][] = [
    ['rwoFs', [mount('SINGLE_NODE_WRITER')]],
    ['rwoFs', [mount('SINGLE_NODE_MULTI_WRITER', 'ext4')]],
    ['rwoFs', [mount('SINGLE_NODE_SINGLE_WRITER')]],
    ['rwoFs', [mount('SINGLE_NODE_READER_ONLY')]],
    ['rwoFs', [mount('SINGLE_NODE_WRITER'), mount('SINGLE_NODE_READER_ONLY')]],
    ['rwoBlock', [block('SINGLE_NODE_MULTI_WRITER')]],
    ['rwopFs', [mount('SINGLE_NODE_SINGLE_WRITER', 'xfs')]],
    ['rwopFs', [mount('SINGLE_NODE_READER_ONLY')]],
    ['nfs', [mount('MULTI_NODE_MULTI_WRITER')]],
    ['nfs', [mount('MULTI_NODE_READER_ONLY')]],
    ['nfs', [mount('MULTI_NODE_SINGLE_WRITER')]],
    ['nfs', [mount('SINGLE_NODE_WRITER')]],
    ['migratable', [block('MULTI_NODE_MULTI_WRITER')]],
  ];
  it.each(confirmed)('%s confirms %j', (kind, capabilities) => {
    const result = validateVolumeCapabilities(capabilities, volume(kind));
    expect(result.confirmed).toEqual({
      volume_context: {},
      volume_capabilities: capabilities,
      parameters: {},
      mutable_parameters: {},
    });
    expect(result.message).toBe('');
  });

  const notConfirmed: [keyof typeof specs, CsiVolumeCapability[], RegExp][] = [
    ['rwoFs', [block('SINGLE_NODE_WRITER')], /block access needs volumeMode Block/],
    ['rwoBlock', [mount('SINGLE_NODE_WRITER')], /mount access needs volumeMode Filesystem/],
    ['rwoFs', [mount('MULTI_NODE_MULTI_WRITER')], /MULTI_NODE_MULTI_WRITER is not served/],
    ['rwoFs', [mount('MULTI_NODE_READER_ONLY')], /MULTI_NODE_READER_ONLY is not served/],
    ['rwoFs', [mount('SINGLE_NODE_WRITER', 'xfs')], /fs_type xfs differs from the volume's ext4/],
    ['rwopFs', [mount('SINGLE_NODE_MULTI_WRITER')], /SINGLE_NODE_MULTI_WRITER is not served/],
    ['rwopFs', [mount('SINGLE_NODE_WRITER')], /SINGLE_NODE_WRITER is not served/],
    ['migratable', [block('SINGLE_NODE_WRITER')], /is not served \(it serves MULTI_NODE_MULTI_WRITER\)/],
    ['migratable', [block('MULTI_NODE_READER_ONLY')], /MULTI_NODE_READER_ONLY is not served/],
    ['migratable', [mount('MULTI_NODE_MULTI_WRITER')], /mount access needs volumeMode Filesystem/],
    [
      'rwoFs',
      [mount('SINGLE_NODE_WRITER'), block('MULTI_NODE_MULTI_WRITER')],
      /volume_capabilities\[1\]: block access .*; volume_capabilities\[1\]: access mode/,
    ],
  ];
  it.each(notConfirmed)('%s does not confirm %j', (kind, capabilities, message) => {
    const result = validateVolumeCapabilities(capabilities, volume(kind));
    expect(result.confirmed).toBeUndefined();
    expect(result.message).toMatch(/^volume pvc-1 is /);
    expect(result.message).toMatch(message);
  });

  it('names the kind in the message', () => {
    const result = validateVolumeCapabilities([mount('SINGLE_NODE_WRITER')], volume('migratable'));
    expect(result.message).toMatch(/^volume pvc-1 is ReadWriteMany Block \(migratable\): /);
  });

  const malformed: [string, CsiVolumeCapability[] | null, RegExp][] = [
    ['no capabilities', [], /volume_capabilities is empty/],
    ['null', null, /volume_capabilities is empty/],
    ['no access type', [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }], /access_type is not set/],
    ['no access mode', [{ block: {}, access_type: 'block' }], /access_mode is not set/],
  ];
  it.each(malformed)('INVALID_ARGUMENT for %s', (_name, capabilities, message) => {
    let caught: unknown;
    try {
      validateVolumeCapabilities(capabilities, volume('rwoFs'));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(CsiError);
    expect((caught as CsiError).code).toBe(status.INVALID_ARGUMENT);
    expect((caught as CsiError).message).toMatch(message);
  });
});

describe('parseCapability', () => {
  it('reads mount, fs_type and mode', () => {
    expect(parseCapability(mount('SINGLE_NODE_WRITER', 'xfs'), 0)).toEqual({
      mode: 'SINGLE_NODE_WRITER',
      volumeMode: 'Filesystem',
      fsType: 'xfs',
    });
  });
  it('an empty fs_type is no fs_type', () => {
    expect(parseCapability(mount('SINGLE_NODE_WRITER'), 0).fsType).toBeUndefined();
  });
  it('block has no fs_type', () => {
    expect(parseCapability(block('MULTI_NODE_MULTI_WRITER'), 0)).toEqual({
      mode: 'MULTI_NODE_MULTI_WRITER',
      volumeMode: 'Block',
      fsType: undefined,
    });
  });
});

describe('servedModes', () => {
  it('serves every mode a new volume of the same kind would be created with', () => {
    // The mode each kind is created from must be among the modes it serves.
    expect(servedModes(specs.rwoFs as VolumeSpec)).toContain('SINGLE_NODE_MULTI_WRITER');
    expect(servedModes(specs.rwopFs as VolumeSpec)).toContain('SINGLE_NODE_SINGLE_WRITER');
    expect(servedModes(specs.nfs as VolumeSpec)).toContain('MULTI_NODE_MULTI_WRITER');
    expect(servedModes(specs.migratable as VolumeSpec)).toEqual(['MULTI_NODE_MULTI_WRITER']);
  });
});

describe('service capabilities', () => {
  const root = protobuf.loadSync(csiProtoPath());
  const values = (name: string) => Object.keys(root.lookupEnum(name).values);

  it('the controller list', () => {
    expect(controllerGetCapabilities()).toEqual({
      capabilities: [
        'CREATE_DELETE_VOLUME',
        'PUBLISH_UNPUBLISH_VOLUME',
        'LIST_VOLUMES',
        'LIST_VOLUMES_PUBLISHED_NODES',
        'GET_CAPACITY',
        'EXPAND_VOLUME',
        'GET_VOLUME',
        'VOLUME_CONDITION',
        'SINGLE_NODE_MULTI_WRITER',
      ].map((type) => ({ rpc: { type } })),
    });
  });

  it('the node list', () => {
    expect(nodeGetCapabilities()).toEqual({
      capabilities: [
        'STAGE_UNSTAGE_VOLUME',
        'GET_VOLUME_STATS',
        'EXPAND_VOLUME',
        'VOLUME_CONDITION',
        'SINGLE_NODE_MULTI_WRITER',
      ].map((type) => ({ rpc: { type } })),
    });
  });

  it('every name is a value of the enum in csi.proto', () => {
    const controller = values('csi.v1.ControllerServiceCapability.RPC.Type');
    const node = values('csi.v1.NodeServiceCapability.RPC.Type');
    for (const type of CONTROLLER_CAPABILITIES) expect(controller).toContain(type);
    for (const type of NODE_CAPABILITIES) expect(node).toContain(type);
  });

  it('the responses encode as the proto messages', () => {
    const response = root.lookupType('csi.v1.ControllerGetCapabilitiesResponse');
    const decoded = response.toObject(
      response.decode(response.encode(response.fromObject(controllerGetCapabilities())).finish()),
      { enums: String },
    );
    expect(decoded).toEqual(controllerGetCapabilities());
  });

  it('controller and node agree on SINGLE_NODE_MULTI_WRITER, which Kubernetes checks on both', () => {
    expect(CONTROLLER_CAPABILITIES.includes('SINGLE_NODE_MULTI_WRITER')).toBe(
      NODE_CAPABILITIES.includes('SINGLE_NODE_MULTI_WRITER'),
    );
  });
});
