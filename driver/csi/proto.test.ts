// Checks driver/csi/csi.proto against facts read from the CSI v1.12.0
// specification (spec.md). Each row below is one field, enum value, oneof or
// option as the specification's protobuf snippets define it; a typo in a field
// number or type here would silently break the wire format with kubelet and
// the sidecars, so the table is deliberately long.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const here = dirname(fileURLToPath(import.meta.url));
const protobufDir = dirname(createRequire(import.meta.url).resolve('protobufjs/package.json'));

const load = (): protobuf.Root => {
  const root = new protobuf.Root();
  // google/protobuf/*.proto come from protobufjs itself, as with @grpc/proto-loader's include dirs.
  root.resolvePath = (origin, target) =>
    target.startsWith('google/protobuf/')
      ? join(protobufDir, target)
      : protobuf.util.path.resolve(origin, target);
  root.loadSync(join(here, 'csi.proto'), { keepCase: true });
  root.resolveAll();
  return root;
};

const root = load();
const type = (name: string) => root.lookupType(`csi.v1.${name}`);
const enumOf = (name: string) => root.lookupEnum(`csi.v1.${name}`);
const must = <T>(value: T | undefined | null, what: string): T => {
  if (value === undefined || value === null) throw new Error(`csi.proto has no ${what}`);
  return value;
};
const field = (message: string, name: string) => must(type(message).fields[name], `${message}.${name}`);
const oneof = (message: string, name: string) =>
  must(type(message).oneofs?.[name], `oneof ${message}.${name}`);
const method = (service: string, name: string) =>
  must(root.lookupService(`csi.v1.${service}`).methods[name], `${service}.${name}`);

type Kind = 'single' | 'repeated' | 'map';
// [message, field, number, type, kind]; map fields are all map<string, string> in CSI.
const fields: [string, string, number, string, Kind][] = [
  // Identity
  ['GetPluginInfoResponse', 'name', 1, 'string', 'single'],
  ['GetPluginInfoResponse', 'vendor_version', 2, 'string', 'single'],
  ['GetPluginInfoResponse', 'manifest', 3, 'string', 'map'],
  ['GetPluginCapabilitiesResponse', 'capabilities', 1, 'PluginCapability', 'repeated'],
  ['PluginCapability', 'service', 1, 'Service', 'single'],
  ['PluginCapability', 'volume_expansion', 2, 'VolumeExpansion', 'single'],
  ['PluginCapability.Service', 'type', 1, 'Type', 'single'],
  ['ProbeResponse', 'ready', 1, '.google.protobuf.BoolValue', 'single'],
  // CreateVolume
  ['CreateVolumeRequest', 'name', 1, 'string', 'single'],
  ['CreateVolumeRequest', 'capacity_range', 2, 'CapacityRange', 'single'],
  ['CreateVolumeRequest', 'volume_capabilities', 3, 'VolumeCapability', 'repeated'],
  ['CreateVolumeRequest', 'parameters', 4, 'string', 'map'],
  ['CreateVolumeRequest', 'secrets', 5, 'string', 'map'],
  ['CreateVolumeRequest', 'volume_content_source', 6, 'VolumeContentSource', 'single'],
  ['CreateVolumeRequest', 'accessibility_requirements', 7, 'TopologyRequirement', 'single'],
  ['CreateVolumeRequest', 'mutable_parameters', 8, 'string', 'map'],
  ['CreateVolumeResponse', 'volume', 1, 'Volume', 'single'],
  ['VolumeContentSource', 'snapshot', 1, 'SnapshotSource', 'single'],
  ['VolumeContentSource', 'volume', 2, 'VolumeSource', 'single'],
  ['VolumeContentSource.SnapshotSource', 'snapshot_id', 1, 'string', 'single'],
  ['VolumeContentSource.VolumeSource', 'volume_id', 1, 'string', 'single'],
  // Shared types
  ['VolumeCapability', 'block', 1, 'BlockVolume', 'single'],
  ['VolumeCapability', 'mount', 2, 'MountVolume', 'single'],
  ['VolumeCapability', 'access_mode', 3, 'AccessMode', 'single'],
  ['VolumeCapability.MountVolume', 'fs_type', 1, 'string', 'single'],
  ['VolumeCapability.MountVolume', 'mount_flags', 2, 'string', 'repeated'],
  ['VolumeCapability.MountVolume', 'volume_mount_group', 3, 'string', 'single'],
  ['VolumeCapability.AccessMode', 'mode', 1, 'Mode', 'single'],
  ['CapacityRange', 'required_bytes', 1, 'int64', 'single'],
  ['CapacityRange', 'limit_bytes', 2, 'int64', 'single'],
  ['Volume', 'capacity_bytes', 1, 'int64', 'single'],
  ['Volume', 'volume_id', 2, 'string', 'single'],
  ['Volume', 'volume_context', 3, 'string', 'map'],
  ['Volume', 'content_source', 4, 'VolumeContentSource', 'single'],
  ['Volume', 'accessible_topology', 5, 'Topology', 'repeated'],
  ['TopologyRequirement', 'requisite', 1, 'Topology', 'repeated'],
  ['TopologyRequirement', 'preferred', 2, 'Topology', 'repeated'],
  ['Topology', 'segments', 1, 'string', 'map'],
  ['Snapshot', 'size_bytes', 1, 'int64', 'single'],
  ['Snapshot', 'snapshot_id', 2, 'string', 'single'],
  ['Snapshot', 'source_volume_id', 3, 'string', 'single'],
  ['Snapshot', 'creation_time', 4, '.google.protobuf.Timestamp', 'single'],
  ['Snapshot', 'ready_to_use', 5, 'bool', 'single'],
  ['Snapshot', 'group_snapshot_id', 6, 'string', 'single'],
  // Controller
  ['DeleteVolumeRequest', 'volume_id', 1, 'string', 'single'],
  ['DeleteVolumeRequest', 'secrets', 2, 'string', 'map'],
  ['ControllerPublishVolumeRequest', 'volume_id', 1, 'string', 'single'],
  ['ControllerPublishVolumeRequest', 'node_id', 2, 'string', 'single'],
  ['ControllerPublishVolumeRequest', 'volume_capability', 3, 'VolumeCapability', 'single'],
  ['ControllerPublishVolumeRequest', 'readonly', 4, 'bool', 'single'],
  ['ControllerPublishVolumeRequest', 'secrets', 5, 'string', 'map'],
  ['ControllerPublishVolumeRequest', 'volume_context', 6, 'string', 'map'],
  ['ControllerPublishVolumeResponse', 'publish_context', 1, 'string', 'map'],
  ['ControllerUnpublishVolumeRequest', 'node_id', 2, 'string', 'single'],
  ['ControllerUnpublishVolumeRequest', 'secrets', 3, 'string', 'map'],
  ['ValidateVolumeCapabilitiesRequest', 'volume_context', 2, 'string', 'map'],
  ['ValidateVolumeCapabilitiesRequest', 'volume_capabilities', 3, 'VolumeCapability', 'repeated'],
  ['ValidateVolumeCapabilitiesRequest', 'mutable_parameters', 6, 'string', 'map'],
  ['ValidateVolumeCapabilitiesResponse', 'confirmed', 1, 'Confirmed', 'single'],
  ['ValidateVolumeCapabilitiesResponse', 'message', 2, 'string', 'single'],
  ['ValidateVolumeCapabilitiesResponse.Confirmed', 'volume_capabilities', 2, 'VolumeCapability', 'repeated'],
  ['ValidateVolumeCapabilitiesResponse.Confirmed', 'mutable_parameters', 4, 'string', 'map'],
  ['ListVolumesRequest', 'max_entries', 1, 'int32', 'single'],
  ['ListVolumesRequest', 'starting_token', 2, 'string', 'single'],
  ['ListVolumesResponse', 'entries', 1, 'Entry', 'repeated'],
  ['ListVolumesResponse', 'next_token', 2, 'string', 'single'],
  ['ListVolumesResponse.Entry', 'status', 2, 'VolumeStatus', 'single'],
  ['ListVolumesResponse.VolumeStatus', 'published_node_ids', 1, 'string', 'repeated'],
  ['ListVolumesResponse.VolumeStatus', 'volume_condition', 2, 'VolumeCondition', 'single'],
  ['ControllerGetVolumeResponse', 'status', 2, 'VolumeStatus', 'single'],
  ['ControllerModifyVolumeRequest', 'volume_id', 1, 'string', 'single'],
  ['ControllerModifyVolumeRequest', 'secrets', 2, 'string', 'map'],
  ['ControllerModifyVolumeRequest', 'mutable_parameters', 3, 'string', 'map'],
  ['GetCapacityRequest', 'volume_capabilities', 1, 'VolumeCapability', 'repeated'],
  ['GetCapacityRequest', 'accessible_topology', 3, 'Topology', 'single'],
  ['GetCapacityResponse', 'available_capacity', 1, 'int64', 'single'],
  ['GetCapacityResponse', 'maximum_volume_size', 2, 'google.protobuf.Int64Value', 'single'],
  ['GetCapacityResponse', 'minimum_volume_size', 3, '.google.protobuf.Int64Value', 'single'],
  ['ControllerServiceCapability', 'rpc', 1, 'RPC', 'single'],
  ['CreateSnapshotRequest', 'source_volume_id', 1, 'string', 'single'],
  ['CreateSnapshotRequest', 'name', 2, 'string', 'single'],
  ['CreateSnapshotRequest', 'secrets', 3, 'string', 'map'],
  ['CreateSnapshotRequest', 'parameters', 4, 'string', 'map'],
  ['ListSnapshotsRequest', 'source_volume_id', 3, 'string', 'single'],
  ['ListSnapshotsRequest', 'snapshot_id', 4, 'string', 'single'],
  ['ListSnapshotsRequest', 'secrets', 5, 'string', 'map'],
  ['GetSnapshotRequest', 'secrets', 2, 'string', 'map'],
  ['ControllerExpandVolumeRequest', 'capacity_range', 2, 'CapacityRange', 'single'],
  ['ControllerExpandVolumeRequest', 'volume_capability', 4, 'VolumeCapability', 'single'],
  ['ControllerExpandVolumeResponse', 'node_expansion_required', 2, 'bool', 'single'],
  // Group controller
  ['CreateVolumeGroupSnapshotRequest', 'source_volume_ids', 2, 'string', 'repeated'],
  ['CreateVolumeGroupSnapshotResponse', 'group_snapshot', 1, 'VolumeGroupSnapshot', 'single'],
  ['VolumeGroupSnapshot', 'snapshots', 2, 'Snapshot', 'repeated'],
  ['VolumeGroupSnapshot', 'creation_time', 3, '.google.protobuf.Timestamp', 'single'],
  ['DeleteVolumeGroupSnapshotRequest', 'snapshot_ids', 2, 'string', 'repeated'],
  ['GetVolumeGroupSnapshotRequest', 'secrets', 3, 'string', 'map'],
  // Snapshot metadata
  ['BlockMetadata', 'byte_offset', 1, 'int64', 'single'],
  ['BlockMetadata', 'size_bytes', 2, 'int64', 'single'],
  ['GetMetadataAllocatedRequest', 'starting_offset', 2, 'int64', 'single'],
  ['GetMetadataAllocatedRequest', 'max_results', 3, 'int32', 'single'],
  ['GetMetadataAllocatedRequest', 'secrets', 4, 'string', 'map'],
  ['GetMetadataAllocatedResponse', 'block_metadata_type', 1, 'BlockMetadataType', 'single'],
  ['GetMetadataAllocatedResponse', 'volume_capacity_bytes', 2, 'int64', 'single'],
  ['GetMetadataAllocatedResponse', 'block_metadata', 3, 'BlockMetadata', 'repeated'],
  ['GetMetadataDeltaRequest', 'base_snapshot_id', 1, 'string', 'single'],
  ['GetMetadataDeltaRequest', 'target_snapshot_id', 2, 'string', 'single'],
  ['GetMetadataDeltaRequest', 'secrets', 5, 'string', 'map'],
  // Node
  ['NodeStageVolumeRequest', 'volume_id', 1, 'string', 'single'],
  ['NodeStageVolumeRequest', 'publish_context', 2, 'string', 'map'],
  ['NodeStageVolumeRequest', 'staging_target_path', 3, 'string', 'single'],
  ['NodeStageVolumeRequest', 'volume_capability', 4, 'VolumeCapability', 'single'],
  ['NodeStageVolumeRequest', 'secrets', 5, 'string', 'map'],
  ['NodeStageVolumeRequest', 'volume_context', 6, 'string', 'map'],
  ['NodeUnstageVolumeRequest', 'staging_target_path', 2, 'string', 'single'],
  ['NodePublishVolumeRequest', 'staging_target_path', 3, 'string', 'single'],
  ['NodePublishVolumeRequest', 'target_path', 4, 'string', 'single'],
  ['NodePublishVolumeRequest', 'volume_capability', 5, 'VolumeCapability', 'single'],
  ['NodePublishVolumeRequest', 'readonly', 6, 'bool', 'single'],
  ['NodePublishVolumeRequest', 'secrets', 7, 'string', 'map'],
  ['NodePublishVolumeRequest', 'volume_context', 8, 'string', 'map'],
  ['NodeUnpublishVolumeRequest', 'target_path', 2, 'string', 'single'],
  ['NodeGetVolumeStatsRequest', 'volume_path', 2, 'string', 'single'],
  ['NodeGetVolumeStatsRequest', 'staging_target_path', 3, 'string', 'single'],
  ['NodeGetVolumeStatsResponse', 'usage', 1, 'VolumeUsage', 'repeated'],
  ['NodeGetVolumeStatsResponse', 'volume_condition', 2, 'VolumeCondition', 'single'],
  ['VolumeUsage', 'available', 1, 'int64', 'single'],
  ['VolumeUsage', 'total', 2, 'int64', 'single'],
  ['VolumeUsage', 'used', 3, 'int64', 'single'],
  ['VolumeUsage', 'unit', 4, 'Unit', 'single'],
  ['VolumeCondition', 'abnormal', 1, 'bool', 'single'],
  ['VolumeCondition', 'message', 2, 'string', 'single'],
  ['NodeGetInfoResponse', 'node_id', 1, 'string', 'single'],
  ['NodeGetInfoResponse', 'max_volumes_per_node', 2, 'int64', 'single'],
  ['NodeGetInfoResponse', 'accessible_topology', 3, 'Topology', 'single'],
  ['NodeExpandVolumeRequest', 'volume_path', 2, 'string', 'single'],
  ['NodeExpandVolumeRequest', 'capacity_range', 3, 'CapacityRange', 'single'],
  ['NodeExpandVolumeRequest', 'staging_target_path', 4, 'string', 'single'],
  ['NodeExpandVolumeRequest', 'volume_capability', 5, 'VolumeCapability', 'single'],
  ['NodeExpandVolumeRequest', 'secrets', 6, 'string', 'map'],
  ['NodeExpandVolumeResponse', 'capacity_bytes', 1, 'int64', 'single'],
];

// [enum, value name, number]
const enumValues: [string, string, number][] = [
  ['PluginCapability.Service.Type', 'UNKNOWN', 0],
  ['PluginCapability.Service.Type', 'CONTROLLER_SERVICE', 1],
  ['PluginCapability.Service.Type', 'VOLUME_ACCESSIBILITY_CONSTRAINTS', 2],
  ['PluginCapability.Service.Type', 'GROUP_CONTROLLER_SERVICE', 3],
  ['PluginCapability.Service.Type', 'SNAPSHOT_METADATA_SERVICE', 4],
  ['PluginCapability.VolumeExpansion.Type', 'ONLINE', 1],
  ['PluginCapability.VolumeExpansion.Type', 'OFFLINE', 2],
  ['VolumeCapability.AccessMode.Mode', 'UNKNOWN', 0],
  ['VolumeCapability.AccessMode.Mode', 'SINGLE_NODE_WRITER', 1],
  ['VolumeCapability.AccessMode.Mode', 'SINGLE_NODE_READER_ONLY', 2],
  ['VolumeCapability.AccessMode.Mode', 'MULTI_NODE_READER_ONLY', 3],
  ['VolumeCapability.AccessMode.Mode', 'MULTI_NODE_SINGLE_WRITER', 4],
  ['VolumeCapability.AccessMode.Mode', 'MULTI_NODE_MULTI_WRITER', 5],
  ['VolumeCapability.AccessMode.Mode', 'SINGLE_NODE_SINGLE_WRITER', 6],
  ['VolumeCapability.AccessMode.Mode', 'SINGLE_NODE_MULTI_WRITER', 7],
  ['ControllerServiceCapability.RPC.Type', 'UNKNOWN', 0],
  ['ControllerServiceCapability.RPC.Type', 'CREATE_DELETE_VOLUME', 1],
  ['ControllerServiceCapability.RPC.Type', 'PUBLISH_UNPUBLISH_VOLUME', 2],
  ['ControllerServiceCapability.RPC.Type', 'LIST_VOLUMES', 3],
  ['ControllerServiceCapability.RPC.Type', 'GET_CAPACITY', 4],
  ['ControllerServiceCapability.RPC.Type', 'CREATE_DELETE_SNAPSHOT', 5],
  ['ControllerServiceCapability.RPC.Type', 'LIST_SNAPSHOTS', 6],
  ['ControllerServiceCapability.RPC.Type', 'CLONE_VOLUME', 7],
  ['ControllerServiceCapability.RPC.Type', 'PUBLISH_READONLY', 8],
  ['ControllerServiceCapability.RPC.Type', 'EXPAND_VOLUME', 9],
  ['ControllerServiceCapability.RPC.Type', 'LIST_VOLUMES_PUBLISHED_NODES', 10],
  ['ControllerServiceCapability.RPC.Type', 'VOLUME_CONDITION', 11],
  ['ControllerServiceCapability.RPC.Type', 'GET_VOLUME', 12],
  ['ControllerServiceCapability.RPC.Type', 'SINGLE_NODE_MULTI_WRITER', 13],
  ['ControllerServiceCapability.RPC.Type', 'MODIFY_VOLUME', 14],
  ['ControllerServiceCapability.RPC.Type', 'GET_SNAPSHOT', 15],
  ['NodeServiceCapability.RPC.Type', 'STAGE_UNSTAGE_VOLUME', 1],
  ['NodeServiceCapability.RPC.Type', 'GET_VOLUME_STATS', 2],
  ['NodeServiceCapability.RPC.Type', 'EXPAND_VOLUME', 3],
  ['NodeServiceCapability.RPC.Type', 'VOLUME_CONDITION', 4],
  ['NodeServiceCapability.RPC.Type', 'SINGLE_NODE_MULTI_WRITER', 5],
  ['NodeServiceCapability.RPC.Type', 'VOLUME_MOUNT_GROUP', 6],
  ['GroupControllerServiceCapability.RPC.Type', 'CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT', 1],
  ['VolumeUsage.Unit', 'BYTES', 1],
  ['VolumeUsage.Unit', 'INODES', 2],
  ['BlockMetadataType', 'FIXED_LENGTH', 1],
  ['BlockMetadataType', 'VARIABLE_LENGTH', 2],
];

// Every field the specification marks [(csi_secret) = true].
const secretFields = [
  'CreateVolumeRequest.secrets',
  'DeleteVolumeRequest.secrets',
  'ControllerPublishVolumeRequest.secrets',
  'ControllerUnpublishVolumeRequest.secrets',
  'ValidateVolumeCapabilitiesRequest.secrets',
  'ControllerModifyVolumeRequest.secrets',
  'CreateSnapshotRequest.secrets',
  'DeleteSnapshotRequest.secrets',
  'ListSnapshotsRequest.secrets',
  'GetSnapshotRequest.secrets',
  'ControllerExpandVolumeRequest.secrets',
  'CreateVolumeGroupSnapshotRequest.secrets',
  'DeleteVolumeGroupSnapshotRequest.secrets',
  'GetVolumeGroupSnapshotRequest.secrets',
  'GetMetadataAllocatedRequest.secrets',
  'GetMetadataDeltaRequest.secrets',
  'NodeStageVolumeRequest.secrets',
  'NodePublishVolumeRequest.secrets',
  'NodeExpandVolumeRequest.secrets',
];

const services: Record<string, string[]> = {
  Identity: ['GetPluginInfo', 'GetPluginCapabilities', 'Probe'],
  Controller: [
    'CreateVolume',
    'DeleteVolume',
    'ControllerPublishVolume',
    'ControllerUnpublishVolume',
    'ValidateVolumeCapabilities',
    'ListVolumes',
    'GetCapacity',
    'ControllerGetCapabilities',
    'CreateSnapshot',
    'DeleteSnapshot',
    'ListSnapshots',
    'GetSnapshot',
    'ControllerExpandVolume',
    'ControllerGetVolume',
    'ControllerModifyVolume',
  ],
  GroupController: [
    'GroupControllerGetCapabilities',
    'CreateVolumeGroupSnapshot',
    'DeleteVolumeGroupSnapshot',
    'GetVolumeGroupSnapshot',
  ],
  SnapshotMetadata: ['GetMetadataAllocated', 'GetMetadataDelta'],
  Node: [
    'NodeStageVolume',
    'NodeUnstageVolume',
    'NodePublishVolume',
    'NodeUnpublishVolume',
    'NodeGetVolumeStats',
    'NodeExpandVolume',
    'NodeGetCapabilities',
    'NodeGetInfo',
  ],
};

const stripDot = (t: string) => t.replace(/^\./, '');

describe('csi.proto (CSI v1.12.0)', () => {
  it('is package csi.v1', () => {
    expect(root.lookup('csi.v1')).toBeInstanceOf(protobuf.Namespace);
  });

  it.each(fields)('%s.%s = %i (%s, %s)', (message, name, id, fieldType, kind) => {
    const f = field(message, name);
    expect(f.id).toBe(id);
    expect(stripDot(f.type)).toBe(stripDot(fieldType));
    if (kind === 'map') {
      expect(f).toBeInstanceOf(protobuf.MapField);
      expect((f as unknown as protobuf.MapField).keyType).toBe('string');
    } else {
      expect(f.map).toBe(false);
      expect(f.repeated).toBe(kind === 'repeated');
    }
  });

  it.each(enumValues)('%s.%s = %i', (name, value, id) => {
    expect(enumOf(name).values[value]).toBe(id);
  });

  it('has the same number of values in each capability enum as the spec', () => {
    expect(Object.keys(enumOf('ControllerServiceCapability.RPC.Type').values)).toHaveLength(16);
    expect(Object.keys(enumOf('NodeServiceCapability.RPC.Type').values)).toHaveLength(7);
    expect(Object.keys(enumOf('VolumeCapability.AccessMode.Mode').values)).toHaveLength(8);
    expect(Object.keys(enumOf('PluginCapability.Service.Type').values)).toHaveLength(5);
  });

  it('declares the oneofs of the spec', () => {
    expect(oneof('VolumeCapability', 'access_type').oneof).toEqual(['block', 'mount']);
    expect(oneof('VolumeContentSource', 'type').oneof).toEqual(['snapshot', 'volume']);
    expect(oneof('PluginCapability', 'type').oneof).toEqual(['service', 'volume_expansion']);
    expect(oneof('ControllerServiceCapability', 'type').oneof).toEqual(['rpc']);
    expect(oneof('NodeServiceCapability', 'type').oneof).toEqual(['rpc']);
    expect(oneof('GroupControllerServiceCapability', 'type').oneof).toEqual(['rpc']);
    // access_mode sits outside the oneof
    expect(field('VolumeCapability', 'access_mode').partOf).toBeNull();
  });

  it.each(secretFields)('%s carries (csi_secret) = true', (path) => {
    const [message, name] = [path.slice(0, path.lastIndexOf('.')), path.slice(path.lastIndexOf('.') + 1)];
    expect(field(message, name).options?.['(csi_secret)']).toBe(true);
  });

  it('marks no other field as secret', () => {
    const found: string[] = [];
    const walk = (ns: protobuf.NamespaceBase) => {
      for (const child of ns.nestedArray) {
        if (child instanceof protobuf.Type) {
          for (const f of child.fieldsArray)
            if (f.options?.['(csi_secret)']) found.push(`${stripDot(child.fullName).slice(7)}.${f.name}`);
        }
        if (child instanceof protobuf.Namespace) walk(child);
      }
    };
    walk(root.lookup('csi.v1') as protobuf.Namespace);
    expect(found.sort()).toEqual([...secretFields].sort());
  });

  it('declares the custom options with their extension numbers', () => {
    const ns = root.lookup('csi.v1') as protobuf.Namespace;
    const ext = (name: string) => ns.get(name) as protobuf.Field | null;
    expect(ext('csi_secret')?.id).toBe(1059);
    expect(ext('csi_secret')?.extend).toBe('google.protobuf.FieldOptions');
    expect(ext('alpha_field')?.id).toBe(1060);
    expect(ext('alpha_enum')?.id).toBe(1060);
    expect(ext('alpha_enum_value')?.id).toBe(1060);
    expect(ext('alpha_message')?.id).toBe(1060);
    expect(ext('alpha_method')?.id).toBe(1060);
    expect(ext('alpha_service')?.id).toBe(1060);
  });

  it('keeps the alpha markers of the spec', () => {
    expect(type('VolumeCondition').options?.['(alpha_message)']).toBe(true);
    expect(type('ControllerGetVolumeRequest').options?.['(alpha_message)']).toBe(true);
    expect(field('GetCapacityResponse', 'minimum_volume_size').options?.['(alpha_field)']).toBe(true);
    expect(field('NodeExpandVolumeRequest', 'secrets').options?.['(alpha_field)']).toBe(true);
    expect(root.lookupService('csi.v1.SnapshotMetadata').options?.['(alpha_service)']).toBe(true);
    expect(method('Controller', 'GetSnapshot').options?.['(alpha_method)']).toBe(true);
  });

  it.each(Object.entries(services))('service %s has the RPCs of the spec, in order', (name, rpcs) => {
    const service = root.lookupService(`csi.v1.${name}`);
    expect(service.methodsArray.map((m) => m.name)).toEqual(rpcs);
    for (const m of service.methodsArray) {
      expect(stripDot(m.requestType)).toBe(`${m.name}Request`);
      expect(stripDot(m.responseType)).toBe(`${m.name}Response`);
      expect(Boolean(m.requestStream)).toBe(false);
      expect(Boolean(m.responseStream)).toBe(name === 'SnapshotMetadata');
    }
  });

  it('round-trips a NodeStageVolumeRequest through the wire format', () => {
    const T = type('NodeStageVolumeRequest');
    const message = {
      volume_id: 'pvc-1',
      publish_context: { device: '/dev/nbd0' },
      staging_target_path: '/var/lib/kubelet/staging/pvc-1',
      volume_capability: { block: {}, access_mode: { mode: 7 } },
      secrets: { token: 'x' },
      volume_context: { replicas: '2' },
    };
    const decoded = T.toObject(T.decode(T.encode(T.fromObject(message)).finish()), { defaults: false });
    expect(decoded).toEqual(message);
  });
});
