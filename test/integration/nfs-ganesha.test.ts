/**
 * The share manager's NFS server as it runs: NFS-Ganesha started by RunningGanesha with the
 * generated configuration, on loopback, exporting a directory; clients are Tandem's NFSv4.1
 * client (lib/nfs4) and Debian's libnfs (NFSv4.0 only, which the server must refuse). What the
 * volume underneath does is covered by the share-manager suites; this one covers what Ganesha is
 * configured to do: NFSv4.1 only, a pinned scope, grace with NFS4ERR_GRACE for new state, lock
 * reclaim from the recovery records after a restart under the same identity, and no reclaim
 * under another.
 */

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, expect, jest, test } from '@jest/globals';
import { DEBIAN_GANESHA_PLUGINS, type GaneshaSettings } from '../../driver/share-manager/ganesha-config.js';
import { PrivateBus } from '../../driver/share-manager/ganesha-dbus.js';
import { RunningGanesha } from '../../driver/share-manager/ganesha-process.js';
import { run } from '../../lib/exec.js';
import { Nfs4Client, retryWhileInGrace } from '../../lib/nfs4/client.js';
import { freePort } from '../../lib/ports.js';
import { waitFor } from '../../lib/readiness.js';

jest.setTimeout(120_000);

let root: string;
let port: number;
let settings: GaneshaSettings;
let server: RunningGanesha | undefined;
const GRACE_S = 15;

async function start(identity = 'tandem-pvc-test', runDir = join(root, 'run')): Promise<RunningGanesha> {
  server = await RunningGanesha.start({ runDir, settings, identity });
  return server;
}

/** A client that renews its lease as a kernel client does, so waiting out grace never expires it. */
async function connect(ownerId: string, verifier = randomBytes(8), reclaiming = false): Promise<Nfs4Client> {
  const client = await Nfs4Client.connect({
    endpoint: { host: '127.0.0.1', port },
    ownerId,
    verifier,
    reclaiming,
    timeoutMs: 5_000,
  });
  client.keepAlive(2_000);
  return client;
}

/** Retries while the server is in grace (what a kernel client does on NFS4ERR_GRACE). */
function afterGrace<T>(attempt: () => Promise<T>): Promise<T> {
  return retryWhileInGrace(attempt, (GRACE_S + 10) * 1000);
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tandem-ganesha-'));
  port = await freePort();
});

// A fresh volume per test: recovery records left by one test would hold the next one in grace.
beforeEach(async () => {
  const volume = await mkdtemp(join(root, 'volume-'));
  await mkdir(join(volume, 'export'));
  settings = {
    exportPath: join(volume, 'export'),
    recoveryRoot: join(volume, 'recovery'),
    serverScope: 'tandem-pvc-test',
    bindAddress: '127.0.0.1',
    port,
    graceSeconds: GRACE_S,
    leaseSeconds: 10,
    pluginsDir: DEBIAN_GANESHA_PLUGINS,
  };
});

afterEach(async () => {
  await server?.stop();
  server = undefined;
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

test('serves NFSv4.1 with the pinned scope and refuses NFSv4.0 clients (libnfs)', async () => {
  await start();
  const client = await connect('scope-check');
  expect(client.serverScope).toBe('tandem-pvc-test');
  await client.destroy();
  const libnfs = await run('nfs-ls', [`nfs://127.0.0.1/?version=4&nfsport=${port}`], {
    allowFailure: true,
    timeoutMs: 20_000,
  });
  expect(libnfs.code).not.toBe(0);
  expect(`${libnfs.stdout}${libnfs.stderr}`).toMatch(/NFS4ERR_MINOR_VERS_MISMATCH/);
});

test("Ganesha's own statistics on the share manager's private bus: NFSv4.1 requests counted as clients send them", async () => {
  const runDir = join(root, 'run-bus');
  await mkdir(runDir, { recursive: true });
  // What a SIGKILLed share manager leaves in its run folder on the node: its bus socket.
  await writeFile(join(runDir, 'bus'), '');
  const bus = await PrivateBus.start(runDir);
  expect(bus).toBeDefined();
  if (bus === undefined) return;
  try {
    server = await RunningGanesha.start({
      runDir,
      settings,
      identity: 'tandem-pvc-test',
      busAddress: bus.address,
    });
    // Ganesha joins the bus as it starts its threads, just after it serves.
    let before: Record<string, number> | undefined;
    await waitFor(
      'Ganesha on its private bus',
      async () => {
        before = await bus.globalOps();
        return before !== undefined;
      },
      10_000,
    );
    const client = await connect('stats');
    const file = await afterGrace(() => client.open('/stats.txt', { create: true }));
    for (let i = 0; i < 10; i++) await client.write(file, BigInt(i * 4096), randomBytes(4096));
    await client.close(file);
    await client.destroy();
    const after = await bus.globalOps();
    // Every write is a COMPOUND of its own; the session setup and open add more.
    expect((after?.NFSv41 ?? 0) - (before?.NFSv41 ?? 0)).toBeGreaterThanOrEqual(10);
    expect(after?.NFSv40 ?? 0).toBe(0);
  } finally {
    await server?.stop();
    server = undefined;
    await bus.stop();
  }
});

test('two clients write and read the same files (date file, then checksummed blocks)', async () => {
  await start();
  const writer = await connect('writer');
  const reader = await connect('reader');
  const date = `${new Date().toISOString()}\n`;
  const file = await afterGrace(() => writer.open('/date.txt', { create: true }));
  await writer.write(file, 0n, Buffer.from(date));
  const seen = await reader.open('/date.txt', { readOnly: true });
  expect((await reader.readAll(seen)).toString()).toBe(date);

  // Both write interleaved 64 KiB blocks of one file at once; each reads the other's back.
  const shared = await writer.open('/blocks.bin', { create: true });
  const sharedByReader = await reader.open('/blocks.bin');
  const blocks = Array.from({ length: 32 }, () => randomBytes(64 * 1024));
  await Promise.all(
    blocks.map((block, index) =>
      (index % 2 === 0 ? writer : reader).write(
        index % 2 === 0 ? shared : sharedByReader,
        BigInt(index * block.length),
        block,
      ),
    ),
  );
  const digest = (data: Buffer) => createHash('sha256').update(data).digest('hex');
  const expected = digest(Buffer.concat(blocks));
  expect(digest(await reader.readAll(sharedByReader))).toBe(expected);
  expect(digest(await writer.readAll(shared))).toBe(expected);
  for (const [c, f] of [
    [writer, file],
    [writer, shared],
    [reader, seen],
    [reader, sharedByReader],
  ] as const)
    await c.close(f);
  await writer.destroy();
  await reader.destroy();
});

test('after a crash: grace refuses new state, the lock holder reclaims, the other cannot take it', async () => {
  await start();
  const verifier = randomBytes(8);
  const holder = await connect('holder', verifier);
  const other = await connect('other');
  const file = await afterGrace(() => holder.open('/locked.txt', { create: true }));
  await holder.write(file, 0n, Buffer.from('held\n'));
  await holder.lock(file);
  const othersOpen = await other.open('/locked.txt');
  await expect(other.lock(othersOpen)).rejects.toThrow(/NFS4ERR_DENIED/);

  // The share manager dies hard: Ganesha gets no chance to write anything more.
  process.kill(server?.pid as number, 'SIGKILL');
  await server?.exited;
  holder.abandon();
  other.abandon();
  const restartedAt = Date.now();
  await start();

  const newcomer = await connect('newcomer');
  await expect(newcomer.open('/fresh.txt', { create: true })).rejects.toThrow(/NFS4ERR_GRACE/);
  const back = await connect('holder', verifier, true);
  const reopened = await back.open('/locked.txt', { reclaim: true });
  await back.lock(reopened, { reclaim: true });
  await back.reclaimComplete();
  // Meanwhile the other client can neither open nor lock: the server is still in grace.
  const otherBack = await connect('other');
  await expect(otherBack.open('/locked.txt')).rejects.toThrow(/NFS4ERR_GRACE/);
  const otherFile = await afterGrace(() => otherBack.open('/locked.txt'));
  // Once grace is over it may open the file, but the reclaimed lock still stands.
  await expect(otherBack.lock(otherFile)).rejects.toThrow(/NFS4ERR_DENIED/);
  expect((await back.readAll(reopened)).toString()).toBe('held\n');
  expect(Date.now() - restartedAt).toBeLessThan((GRACE_S + 10) * 1000);
  for (const c of [newcomer, back, otherBack]) await c.destroy();
});

test('grace ends early once every known client has reclaimed', async () => {
  await start();
  const verifier = randomBytes(8);
  const only = await connect('only-client', verifier);
  const file = await only.open('/early.txt', { create: true });
  await only.lock(file);
  process.kill(server?.pid as number, 'SIGKILL');
  await server?.exited;
  only.abandon();
  await start();
  const back = await connect('only-client', verifier, true);
  const reopened = await back.open('/early.txt', { reclaim: true });
  await back.lock(reopened, { reclaim: true });
  await back.reclaimComplete();
  const reclaimedAt = Date.now();
  // The only client the records know has reclaimed: Ganesha lifts grace at its next check (its
  // reaper looks every few seconds), long before the 15 s grace period would end.
  const next = await connect('next');
  const opened = await afterGrace(() => next.open('/early2.txt', { create: true }));
  expect(Date.now() - reclaimedAt).toBeLessThan((GRACE_S * 1000) / 2);
  await next.close(opened);
  for (const c of [back, next]) await c.destroy().catch(() => undefined);
});

test('a server with another identity finds no records: the old lock cannot be reclaimed', async () => {
  await start();
  const verifier = randomBytes(8);
  const holder = await connect('stranger-holder', verifier);
  const file = await holder.open('/elsewhere.txt', { create: true });
  await holder.lock(file);
  process.kill(server?.pid as number, 'SIGKILL');
  await server?.exited;
  holder.abandon();
  await start('tandem-pvc-other', join(root, 'run-other'));
  const back = await connect('stranger-holder', verifier, true);
  await expect(back.open('/elsewhere.txt', { reclaim: true })).rejects.toThrow(
    /NFS4ERR_NO_GRACE|NFS4ERR_RECLAIM_BAD/,
  );
  await back.destroy();
});

test('a Ganesha that cannot serve says why, in its own words', async () => {
  // The export's directory is missing: Ganesha itself starts, but serves only its pseudo root.
  const missing = RunningGanesha.start({
    runDir: join(root, 'run-missing'),
    settings: { ...settings, exportPath: join(root, 'no-such-volume') },
    identity: 'tandem-pvc-test',
  });
  await expect(missing).rejects.toThrow(/serves no export: .*no-such-volume/);
  // An address this machine does not have: Ganesha exits with its FATAL line.
  const badAddress = RunningGanesha.start({
    runDir: join(root, 'run-address'),
    settings: { ...settings, bindAddress: '198.19.255.254' },
    identity: 'tandem-pvc-test',
  });
  await expect(badAddress).rejects.toThrow(/exited during start .*Error binding/);
  // The port is taken by another server: refused before anything starts.
  const blocker = await start();
  const second = RunningGanesha.start({
    runDir: join(root, 'run-second'),
    settings,
    identity: 'tandem-pvc-test',
  });
  await expect(second).rejects.toThrow(/already serves 127.0.0.1/);
  expect(blocker.running).toBe(true);
});
