/**
 * `tandem share-manager` serving a real Tandem volume: the whole driver as processes (CsiStack:
 * controller, a data plane and node plugin per node), a volume of three replicas, the share
 * manager as its own process on a node — attaching through the engine ControllerPublishVolume put
 * there, formatting, mounting and running Ganesha — and NFSv4.1 clients (lib/nfs4) moving data.
 *
 * What the tests play, and why:
 * - The controller does not yet place share managers (no Pod, Service or EndpointSlice yet), so
 *   the test asks for the engine with ControllerPublishVolume and starts the share manager itself,
 *   on the node it published to. The volume is a ReadWriteOnce Filesystem one: CreateVolume does
 *   not serve ReadWriteMany Filesystem until the controller side lands, and the share manager
 *   stages exactly as it will for one (SINGLE_NODE_WRITER, on its own node).
 * - Nodes share this machine's network namespace (CsiStack runs on loopback), so each "node"
 *   has a loopback address of its own: share managers listen on 127.0.1.N, clients connect from
 *   127.0.2.N. After a move a client reconnects to the new address, where in a cluster the
 *   volume's Service keeps one address and its EndpointSlice changes.
 */

import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, jest, test } from '@jest/globals';
import { releaseShare } from '../../driver/share-manager/share-manager.js';
import { silentLogger } from '../../lib/log.js';
import { type LockHandle, Nfs4Client, Nfs4Error, type OpenFile } from '../../lib/nfs4/client.js';
import { Nfs4Session } from '../../lib/nfs4/session.js';
import { packageRoot } from '../../lib/paths.js';
import { waitFor } from '../../lib/readiness.js';
import { Service } from '../../lib/service.js';
import { tandemEntry } from '../harness/cli-process.js';
import { retrying } from '../harness/csi-client.js';
import { CsiStack, type StackNode } from '../harness/csi-stack.js';
import { CsiVolumeSteps } from '../harness/csi-volume-steps.js';

jest.setTimeout(300_000);

const MiB = 1024 * 1024;
const serverAddress = (index: number) => `127.0.1.${index + 1}`;
const clientAddress = (index: number) => `127.0.2.${index + 1}`;
const digest = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let stack: CsiStack;
let steps: CsiVolumeSteps;
let volumeId: string;
const managers = new Map<string, Service>();

function stateDir(node: StackNode): string {
  return join(stack.dir, `share-manager-${node.name}`);
}

async function startShareManager(index: number): Promise<Service> {
  const node = steps.node(index);
  const logFile = join(stack.dir, `share-manager-${node.name}.log`);
  const service = new Service({
    name: `share-manager-${node.name}`,
    command: process.execPath,
    args: [
      ...tandemEntry(),
      'share-manager',
      '--volume',
      volumeId,
      '--node-id',
      node.name,
      '--bind-address',
      serverAddress(index),
      '--engine-socket-dir',
      node.engineDir,
      '--state-dir',
      stateDir(node),
      '--fast-failover',
      '--log-level',
      'debug',
    ],
    cwd: packageRoot(),
    logFile,
  });
  managers.set(node.name, service);
  try {
    await waitFor(
      `share manager on ${node.name} serving NFS`,
      async () => {
        try {
          await Nfs4Session.ping({ host: serverAddress(index), port: 2049 }, 500);
          return true;
        } catch {
          return false;
        }
      },
      120_000,
      () => service.running,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${(await readFile(logFile, 'utf8')).slice(-3000)}`);
  }
  return service;
}

async function client(
  server: number,
  from: number,
  ownerId: string,
  verifier = randomBytes(8),
  reclaiming = false,
): Promise<Nfs4Client> {
  const c = await Nfs4Client.connect({
    endpoint: { host: serverAddress(server), port: 2049, localAddress: clientAddress(from) },
    ownerId,
    verifier,
    reclaiming,
    timeoutMs: 10_000,
  });
  c.keepAlive(3_000);
  return c;
}

async function untilNotGrace<T>(attempt: () => Promise<T>, limitMs = 45_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof Nfs4Error && err.is('NFS4ERR_GRACE')) || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

async function moveEngine(from: number, to: number): Promise<void> {
  await retrying(() =>
    steps.controller.call('Controller', 'ControllerUnpublishVolume', {
      volume_id: volumeId,
      node_id: steps.node(from).name,
    }),
  );
  await steps.publish(volumeId, steps.node(to));
}

beforeAll(async () => {
  stack = await CsiStack.start(3);
  steps = new CsiVolumeSteps(stack, 128 * MiB);
  volumeId = await steps.createVolume('share-fs', { numberOfReplicas: '3' });
  await steps.publish(volumeId, steps.node(0));
}, 120_000);

afterAll(async () => {
  for (const service of managers.values()) await service.stop();
  // What a killed share manager left on its node (the tests' last one stops cleanly).
  for (let index = 0; index < 3; index++) {
    const node = steps.node(index);
    await releaseShare({
      volumeId,
      nodeId: node.name,
      stateDir: stateDir(node),
      engineSocketDir: node.engineDir,
      frontend: 'auto',
      logger: silentLogger(),
    }).catch(() => undefined);
  }
  await steps?.releaseAll();
  await stack?.destroy();
}, 180_000);

const files = new Map<string, string>();

test('two clients on two nodes share files: the date file, then checksummed blocks written at once', async () => {
  await startShareManager(0);
  const writer = await client(0, 1, 'node-2-client');
  const reader = await client(0, 2, 'node-3-client');
  const date = `${new Date().toString()}\n`;
  const dateFile = await untilNotGrace(() => writer.open('/date.txt', { create: true }));
  await writer.write(dateFile, 0n, Buffer.from(date));
  const seen = await untilNotGrace(() => reader.open('/date.txt', { readOnly: true }));
  expect((await reader.readAll(seen)).toString()).toBe(date);
  files.set('/date.txt', digest(Buffer.from(date)));

  // Each client writes four 1 MiB files, both at once; each reads all eight back.
  const work = async (c: Nfs4Client, prefix: string) => {
    for (let n = 0; n < 4; n++) {
      const data = randomBytes(MiB);
      const path = `/${prefix}-${n}.bin`;
      const file = await c.open(path, { create: true });
      for (let at = 0; at < data.length; at += 256 * 1024)
        await c.write(file, BigInt(at), data.subarray(at, at + 256 * 1024));
      await c.close(file);
      files.set(path, digest(data));
    }
  };
  await Promise.all([work(writer, 'from-node-2'), work(reader, 'from-node-3')]);
  for (const c of [writer, reader])
    for (const [path, sum] of files) {
      const file = await c.open(path, { readOnly: true });
      expect({ path, sum: digest(await c.readAll(file)) }).toEqual({ path, sum });
      await c.close(file);
    }
  for (const c of [writer, reader]) await c.destroy();
});

test('share manager SIGKILLed mid-write: a new one on another node, lock reclaimed, nothing acknowledged lost', async () => {
  const holderVerifier = randomBytes(8);
  const otherVerifier = randomBytes(8);
  const holder = await client(0, 1, 'lock-holder', holderVerifier);
  const other = await client(0, 2, 'lock-other', otherVerifier);
  const locked = await holder.open('/locked.txt', { create: true });
  await holder.write(locked, 0n, Buffer.from('mine\n'));
  await holder.lock(locked);
  const othersView = await other.open('/locked.txt');
  await expect(other.lock(othersView)).rejects.toThrow(/NFS4ERR_DENIED/);

  // A writer streams 64 KiB blocks; a block counts once its FILE_SYNC WRITE was acknowledged.
  const stream = await holder.open('/stream.bin', { create: true });
  const acknowledged = new Map<number, string>();
  let writing = true;
  let index = 0;
  const writer = (async () => {
    while (writing) {
      const block = randomBytes(64 * 1024);
      try {
        await holder.write(stream, BigInt(index * block.length), block);
      } catch {
        return; // the server went away mid-write
      }
      acknowledged.set(index, digest(block));
      index++;
    }
  })();
  await waitFor('some blocks acknowledged', async () => acknowledged.size >= 20, 30_000);

  const killedAt = Date.now();
  await managers.get(steps.node(0).name)?.kill();
  await writer;
  writing = false;
  holder.abandon();
  other.abandon();

  // The controller's part (until it does this itself): the engine moves to node 2.
  await moveEngine(0, 1);
  await startShareManager(1);

  const newcomer = await client(1, 2, 'newcomer');
  await expect(newcomer.open('/fresh.txt', { create: true })).rejects.toThrow(/NFS4ERR_GRACE/);
  const back = await client(1, 1, 'lock-holder', holderVerifier, true);
  const reclaimed = await back.open('/locked.txt', { reclaim: true });
  await back.lock(reclaimed, { reclaim: true });
  const streamBack = await back.open('/stream.bin', { reclaim: true });
  await back.reclaimComplete();
  const block = randomBytes(64 * 1024);
  await back.write(streamBack, BigInt(index * block.length), block);
  acknowledged.set(index, digest(block));
  const firstWriteS = (Date.now() - killedAt) / 1000;
  console.log(`share-manager failover: first acknowledged write ${firstWriteS.toFixed(1)} s after the kill`);

  // The other client comes back too; it may not take the lock meanwhile, nor after.
  const otherBack = await client(1, 2, 'lock-other', otherVerifier, true);
  await otherBack.reclaimComplete();
  const otherFile = await untilNotGrace(() => otherBack.open('/locked.txt'));
  await expect(otherBack.lock(otherFile)).rejects.toThrow(/NFS4ERR_DENIED/);

  const data = await back.readAll(streamBack);
  for (const [n, sum] of acknowledged)
    expect({ block: n, sum: digest(data.subarray(n * 64 * 1024, (n + 1) * 64 * 1024)) }).toEqual({
      block: n,
      sum,
    });
  for (const [path, sum] of files) {
    const file = await back.open(path, { readOnly: true });
    expect({ path, sum: digest(await back.readAll(file)) }).toEqual({ path, sum });
    await back.close(file);
  }
  // Fast failover's grace is 30 s; the kill-to-write time includes the engine's move and attach.
  expect(firstWriteS).toBeLessThan(45);
  for (const c of [newcomer, back, otherBack]) await c.destroy().catch(() => undefined);
});

test('stopped cleanly and started on a third node: unmounted, remounted, every file intact', async () => {
  await managers.get(steps.node(1).name)?.stop();
  managers.delete(steps.node(1).name);
  await moveEngine(1, 2);
  await startShareManager(2);
  const reader = await client(2, 0, 'after-remount');
  for (const [path, sum] of files) {
    const file = await untilNotGrace(() => reader.open(path, { readOnly: true }));
    expect({ path, sum: digest(await reader.readAll(file)) }).toEqual({ path, sum });
    await reader.close(file);
  }
  await reader.destroy();
});
