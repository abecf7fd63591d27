import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../lib/log.js';
import { FakeNodeOps } from '../../test/harness/fake-node-ops.js';
import { TOPOLOGY_NODE_KEY } from '../csi/node-topology.js';
import { csiServices } from '../csi/proto.js';
import { serviceImplementation, VolumeLocks } from '../csi/rpc.js';
import { missingTools, nodeHandlers, nodeReadiness, requiredTools } from './service.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tandem-node-service-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const handlers = () =>
  nodeHandlers({
    nodeId: 'node-7',
    stateDir: join(dir, 'state'),
    engineSocketDir: '/run/e',
    ops: new FakeNodeOps(),
  });

describe('Node service', () => {
  it('implements every Node RPC of CSI 1.12', () => {
    const service = csiServices().Node;
    expect(Object.keys(handlers()).sort()).toEqual(Object.keys(service).sort());
    expect(() =>
      serviceImplementation(service, handlers(), { logger: silentLogger(), locks: new VolumeLocks() }),
    ).not.toThrow();
  });

  it('NodeGetInfo: the node id, no volume limit, the node topology segment', async () => {
    expect(await handlers().NodeGetInfo()).toEqual({
      node_id: 'node-7',
      max_volumes_per_node: 0,
      accessible_topology: { segments: { [TOPOLOGY_NODE_KEY]: 'node-7' } },
    });
  });

  it('NodeGetCapabilities: stage/unstage, stats, expand, condition, single-node multi-writer', async () => {
    const { capabilities } = await handlers().NodeGetCapabilities();
    expect(capabilities.map((c) => c.rpc.type)).toEqual([
      'STAGE_UNSTAGE_VOLUME',
      'GET_VOLUME_STATS',
      'EXPAND_VOLUME',
      'VOLUME_CONDITION',
      'SINGLE_NODE_MULTI_WRITER',
    ]);
  });
});

describe('readiness', () => {
  it('finds executables on PATH and names the missing ones', async () => {
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await writeFile(join(bin, 'mount'), '#!/bin/sh\n');
    await chmod(join(bin, 'mount'), 0o755);
    await writeFile(join(bin, 'umount'), 'not executable');
    expect(await missingTools(['mount', 'umount', 'nbdfuse'], bin)).toEqual(['umount', 'nbdfuse']);
  });

  it('needs nbdfuse for the nbdfuse frontend and nbd-client for the kernel one', () => {
    expect(requiredTools('nbdfuse')).toEqual(
      expect.arrayContaining(['nbdfuse', 'mkfs.ext4', 'resize2fs', 'xfs_growfs']),
    );
    expect(requiredTools('kernel-nbd')).toContain('nbd-client');
    expect(requiredTools('kernel-nbd')).not.toContain('nbdfuse');
  });

  it('is not ready when the state directory cannot be made', async () => {
    await writeFile(join(dir, 'file'), '');
    await expect(
      nodeReadiness({ stateDir: join(dir, 'file', 'state'), frontend: 'nbdfuse' })(),
    ).rejects.toThrow();
  });
});
