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
 * - Nodes share this machine's network namespace (CsiStack runs on loopback): each node has
 *   loopback addresses of its own, for its share manager and its clients (harness/share-managers.ts).
 */

import { createHash, randomBytes } from 'node:crypto';
import { statfs } from 'node:fs/promises';
import { afterAll, beforeAll, expect, jest, test } from '@jest/globals';
import { type Nfs4Client, retryWhileInGrace } from '../../lib/nfs4/client.js';
import { waitFor } from '../../lib/readiness.js';
import { CsiStack } from '../harness/csi-stack.js';
import { CsiVolumeSteps } from '../harness/csi-volume-steps.js';
import { ShareManagers, serverAddress } from '../harness/share-managers.js';

jest.setTimeout(300_000);

const MiB = 1024 * 1024;
const digest = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let stack: CsiStack;
let steps: CsiVolumeSteps;
let volumeId: string;
let shares: ShareManagers;

function untilNotGrace<T>(attempt: () => Promise<T>): Promise<T> {
  return retryWhileInGrace(attempt, 45_000);
}

beforeAll(async () => {
  stack = await CsiStack.start(3);
  steps = new CsiVolumeSteps(stack, 128 * MiB);
  volumeId = await steps.createVolume('share-fs', { numberOfReplicas: '3' });
  await steps.publish(volumeId, steps.node(0));
  shares = new ShareManagers(stack, steps, volumeId, true);
}, 120_000);

afterAll(async () => {
  await shares?.destroy();
  await steps?.releaseAll();
  await stack?.destroy();
}, 180_000);

const files = new Map<string, string>();

test('two clients on two nodes share files: the date file, then checksummed blocks written at once', async () => {
  await shares.start(0);
  const writer = await shares.client(0, 1, 'node-2-client');
  const reader = await shares.client(0, 2, 'node-3-client');
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
  // Its metrics: serving, one grace period entered, both clients' connections counted.
  const metrics = await (await fetch(`http://${serverAddress(0)}:9504/metrics`)).text();
  expect(metrics).toMatch(/^tandem_share_manager_up\{volume="share-fs",component="share-manager"\} 1$/m);
  expect(metrics).toMatch(
    /^tandem_share_manager_grace_periods_total\{volume="share-fs",component="share-manager"\} 1$/m,
  );
  expect(metrics).toMatch(/^tandem_share_manager_clients\{volume="share-fs",component="share-manager"\} 2$/m);
  for (const c of [writer, reader]) await c.destroy();
});

test('share manager SIGKILLed mid-write: a new one on another node, lock reclaimed, nothing acknowledged lost', async () => {
  const holderVerifier = randomBytes(8);
  const otherVerifier = randomBytes(8);
  const holder = await shares.client(0, 1, 'lock-holder', { verifier: holderVerifier });
  const other = await shares.client(0, 2, 'lock-other', { verifier: otherVerifier });
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
  await shares.running.get(0)?.kill();
  await writer;
  writing = false;
  holder.abandon();
  other.abandon();

  // The controller's part (until it does this itself): the engine moves to node 2.
  await shares.moveEngine(0, 1);
  await shares.start(1);

  const newcomer = await shares.client(1, 2, 'newcomer');
  await expect(newcomer.open('/fresh.txt', { create: true })).rejects.toThrow(/NFS4ERR_GRACE/);
  const back = await shares.client(1, 1, 'lock-holder', { verifier: holderVerifier, reclaiming: true });
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
  const otherBack = await shares.client(1, 2, 'lock-other', { verifier: otherVerifier, reclaiming: true });
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
  await shares.running.get(1)?.stop();
  shares.running.delete(1);
  await shares.moveEngine(1, 2);
  await shares.start(2);
  const reader = await shares.client(2, 0, 'after-remount');
  for (const [path, sum] of files) {
    const file = await untilNotGrace(() => reader.open(path, { readOnly: true }));
    expect({ path, sum: digest(await reader.readAll(file)) }).toEqual({ path, sum });
    await reader.close(file);
  }
  await reader.destroy();
});

// xfs: root on these machines lacks CAP_SYS_RESOURCE, which ext4's online resize needs (the
// share manager then retries every tick and says so); xfs grows online without it. xfs needs at
// least 300 MiB, so this is a volume of its own, served from another node beside the first one.
test('expanded while it serves: the share manager grows the exported filesystem online, the data intact', async () => {
  const xfsSteps = new CsiVolumeSteps(stack, 320 * MiB);
  const first = [...shares.running.keys()].at(-1) ?? 0;
  const node = (first + 1) % 3;
  const id = await xfsSteps.createVolume('share-xfs', { numberOfReplicas: '2' });
  await xfsSteps.publish(id, xfsSteps.node(node));
  const xfsShares = new ShareManagers(stack, xfsSteps, id, true, 'xfs');
  try {
    await xfsShares.start(node);
    const mount = xfsShares.mountOf(node);
    const sizeOf = async () => {
      const stats = await statfs(mount);
      return stats.blocks * stats.bsize;
    };
    expect(await sizeOf()).toBeLessThan(320 * MiB);
    const client = await xfsShares.client(node, (node + 1) % 3, 'before-growth');
    const data = randomBytes(4 * MiB);
    const file = await untilNotGrace(() => client.open('/kept.bin', { create: true }));
    for (let offset = 0; offset < data.length; offset += MiB)
      await client.write(file, BigInt(offset), data.subarray(offset, offset + MiB));
    await client.close(file);
    await xfsSteps.controller.call('Controller', 'ControllerExpandVolume', {
      volume_id: id,
      capacity_range: { required_bytes: String(512 * MiB) },
    });
    // The replicas grow, the engine offers the new size, the share manager notices (10 s ticks)
    // and grows the device and the mounted filesystem under the running export.
    // xfs keeps part of the device for itself: 320 MiB shows about 270, 512 MiB 448.
    await waitFor('the exported filesystem grown', async () => (await sizeOf()) > 400 * MiB, 90_000);
    const again = await untilNotGrace(() => client.open('/kept.bin', { readOnly: true }));
    expect(digest(await client.readAll(again))).toBe(digest(data));
    await client.close(again);
    await client.destroy();
  } finally {
    await xfsShares.destroy();
    await xfsSteps.releaseAll();
  }
});
