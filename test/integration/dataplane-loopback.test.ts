import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EngineHostOptions } from '../../driver/engine/host.js';
import type { Membership } from '../../driver/engine/membership.js';
import { ReplicaClient, ReplicaError } from '../../driver/replica/client.js';
import { type DecodedFrame, encodeFrame, FrameDecoder, helloProof } from '../../driver/replica/protocol.js';
import { run } from '../../lib/exec.js';
import { silentLogger } from '../../lib/log.js';
import { waitFor } from '../../lib/readiness.js';
import { type LoopbackDataPlane, startLoopbackDataPlane } from '../harness/dataplane.js';
import { fioVerify } from '../harness/fio.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

/**
 * The data plane on loopback: three real replica servers (temp data directories), engines with
 * their NBD server on a unix socket, and real NBD clients (nbdcopy, fio) in child processes.
 */
describe('data plane on loopback', () => {
  let dp: LoopbackDataPlane;
  let dir: string;

  beforeEach(async () => {
    dp = await startLoopbackDataPlane({ replicas: 3, sizeBytes: SIZE });
    dir = await mkdtemp(join(tmpdir(), 'tandem-dp-nbd-'));
  });

  afterEach(async () => {
    await dp.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  const startHost = (node: string, mode: 'takeover' | 'join', extra: Partial<EngineHostOptions> = {}) =>
    dp.startEngine(node, { socketDir: dir, mode, extra });

  async function nbdcopy(from: string, to: string): Promise<void> {
    await run('nbdcopy', ['--connections=2', '--requests=16', '--flush', from, to], { timeoutMs: 40_000 });
  }

  async function copyIn(uri: string, data: Buffer): Promise<void> {
    const file = join(dir, `in-${randomBytes(4).toString('hex')}.img`);
    await writeFile(file, data);
    await nbdcopy(file, uri);
  }

  async function copyOut(uri: string): Promise<Buffer> {
    const file = join(dir, `out-${randomBytes(4).toString('hex')}.img`);
    await nbdcopy(uri, file);
    return readFile(file);
  }

  function fio(uri: string, extra: string[] = []) {
    return fioVerify(uri, { size: '16M', cwd: dir, timeoutMs: 50_000, extra });
  }

  const modes = (record: Membership) => Object.fromEntries(record.replicas.map((r) => [r.node, r.mode]));

  const WAIT_MS = 20_000;

  it('nbdcopy writes 16 MiB of random data and reads the same bytes back; the replicas agree', async () => {
    const { host, uri } = await startHost('node-1', 'takeover');
    const data = randomBytes(SIZE);
    await copyIn(uri, data);
    expect((await copyOut(uri)).equals(data)).toBe(true);
    const scrub = await host.scrub();
    expect(scrub.divergent).toEqual([]);
    expect(scrub.comparedBytes).toBe(SIZE);
  }, 60_000);

  it('passes fio randwrite with crc32c verification', async () => {
    const { uri } = await startHost('node-1', 'takeover');
    const result = await fio(uri);
    expect(result.stderr).not.toMatch(/verify: bad|error/i);
    expect(result.code).toBe(0);
  }, 60_000);

  it('keeps serving when a replica server stops mid-workload, then rebuilds it when it returns', async () => {
    const { host, uri } = await startHost('node-1', 'takeover');
    const before = (await dp.store.read()).epoch;
    let writes = 0;
    const hook = host.nbd?.onRequest;
    if (host.nbd !== undefined)
      host.nbd.onRequest = (op, ...rest) => {
        if (op === 'write') writes++;
        hook?.(op, ...rest);
      };
    const workload = fio(uri);
    await waitFor('the workload to get going', async () => writes >= 300, WAIT_MS);
    await dp.stopReplica('node-2');
    const writesAtStop = writes;
    const result = await workload;
    expect(result.stderr).not.toMatch(/verify: bad|error/i);
    expect(result.code).toBe(0);
    expect(writes).toBeGreaterThan(writesAtStop); // it really was mid-workload
    const fenced = await dp.store.read();
    expect(modes(fenced)['node-2']).toBe('Failed');
    expect(fenced.epoch).toBeGreaterThan(before);

    await dp.restartReplica('node-2');
    await waitFor(
      'node-2 to be rebuilt',
      async () => modes(await dp.store.read())['node-2'] === 'ReadWrite',
      WAIT_MS,
    );
    const scrub = await host.scrub();
    expect(scrub.divergent).toEqual([]);
    expect(host.set.readable().map((t) => t.member.node)).toEqual(['node-1', 'node-2', 'node-3']);
  }, 60_000);

  it('an engine in the replica server process reaches the local replica directly, with the same rules', async () => {
    const [first] = dp.replicas;
    if (first === undefined) throw new Error('no replica');
    const local = first.server.registry;
    await expect(
      startHost('node-1', 'takeover', { localReplicas: local, secret: randomBytes(32) }),
    ).rejects.toThrow();
    const { host, uri } = await startHost('node-1', 'takeover', { localReplicas: local });
    expect(host.set.linkOf('node-1')?.address).toMatch(/^local:/);
    expect(host.set.linkOf('node-2')?.address).toMatch(/^127\.0\.0\.1:/);
    const workload = fio(uri);
    await sleep(300);
    await dp.stopReplica('node-3');
    const result = await workload;
    expect(result.code).toBe(0);
    expect(modes(await dp.store.read())['node-3']).toBe('Failed');
    await dp.restartReplica('node-3');
    await waitFor(
      'node-3 to be rebuilt',
      async () => modes(await dp.store.read())['node-3'] === 'ReadWrite',
      WAIT_MS,
    );
    expect((await host.scrub()).divergent).toEqual([]);
    // The local replica is fenced by epoch like any other: an engine with an older epoch is refused.
    await expect(
      ReplicaClient.connect({
        address: first.address,
        volume: dp.volume,
        engineId: 'old',
        secret: dp.secret,
        epoch: 1n,
        requestTimeoutMs: 2000,
        log: silentLogger(),
      }),
    ).rejects.toMatchObject({ status: 'STALE_EPOCH' });
  }, 60_000);

  it('fences a replica whose server stopped while the engine was idle on the next write', async () => {
    const { uri } = await startHost('node-1', 'takeover');
    await copyIn(uri, randomBytes(MiB));
    await dp.stopReplica('node-3');
    await sleep(200); // the engine's connection to it is closed by now, with nothing in flight
    const data = randomBytes(SIZE);
    await copyIn(uri, data);
    expect(modes(await dp.store.read())['node-3']).toBe('Failed');
    expect((await copyOut(uri)).equals(data)).toBe(true);
  }, 60_000);

  it('refuses a connection with the wrong credential: AUTH_FAILED, and nothing is read or written', async () => {
    await startHost('node-1', 'takeover');
    const replica = dp.replicas[0];
    if (replica === undefined) throw new Error('no replica');
    const epoch = BigInt((await dp.store.read()).epoch);
    const attempt = ReplicaClient.connect({
      address: replica.address,
      volume: dp.volume,
      engineId: 'intruder',
      secret: randomBytes(32),
      epoch,
      requestTimeoutMs: 3000,
      log: silentLogger(),
    });
    await expect(attempt).rejects.toMatchObject({ name: 'ReplicaError', status: 'AUTH_FAILED' });

    // The same on the wire, with a write and a read pipelined behind the bad HELLO.
    const replies = await rawSession(replica.address, (nonce) => [
      {
        kind: 'request',
        op: 'HELLO',
        requestId: 1n,
        epoch,
        volume: dp.volume,
        engineId: 'intruder',
        proof: helloProof(randomBytes(32), nonce, dp.volume, 'intruder', epoch),
      },
      {
        kind: 'request',
        op: 'WRITE',
        requestId: 2n,
        epoch,
        offset: 0n,
        length: 4096,
        fua: true,
        data: Buffer.alloc(4096, 0xab),
      },
      { kind: 'request', op: 'READ', requestId: 3n, epoch, offset: 0n, length: 4096 },
    ]);
    // Replies come in any order; each names its request.
    const statuses = new Map(
      replies.flatMap((f) =>
        f.type === 'frame' && f.frame.kind === 'reply' ? [[f.frame.requestId, f.frame.status] as const] : [],
      ),
    );
    expect(statuses.get(1n)).toBe('AUTH_FAILED');
    // The pipelined write and read were refused (or never answered): no OK, no data.
    for (const id of [2n, 3n]) expect([undefined, 'AUTH_REQUIRED']).toContain(statuses.get(id));
    const data = await readFile(join(replica.dataDir, dp.volume, 'data'));
    expect(data.subarray(0, 4096).equals(Buffer.alloc(4096))).toBe(true);
  });

  it('refuses a HELLO stamped with an epoch older than the replica’s: STALE_EPOCH', async () => {
    await startHost('node-1', 'takeover');
    const replica = dp.replicas[0];
    if (replica === undefined) throw new Error('no replica');
    const epoch = BigInt((await dp.store.read()).epoch);
    const options = {
      address: replica.address,
      volume: dp.volume,
      engineId: 'late',
      secret: dp.secret,
      requestTimeoutMs: 3000,
      log: silentLogger(),
    };
    const stale = await ReplicaClient.connect({ ...options, epoch: epoch - 1n }).catch((e: unknown) => e);
    expect(stale).toBeInstanceOf(ReplicaError);
    expect(stale).toMatchObject({ status: 'STALE_EPOCH', replicaEpoch: epoch });
    const current = await ReplicaClient.connect({ ...options, epoch });
    await current.probe();
    current.close();
  });

  it('a new engine taking over after a crash reads back every block written and flushed before', async () => {
    const first = await startHost('node-1', 'takeover');
    const data = randomBytes(SIZE);
    await copyIn(first.uri, data);
    // The crash: no leave, no goodbye to the replicas, connections cut.
    await first.host.rebuilder.stop();
    first.host.set.closeLinks();
    await first.host.nbd?.close();
    const second = await startHost('node-2', 'takeover');
    const record = await dp.store.read();
    expect(record.engines).toEqual([{ node: 'node-2', id: second.host.engineId }]);
    expect(Object.values(modes(record))).toEqual(['ReadWrite', 'ReadWrite', 'ReadWrite']);
    expect((await copyOut(second.uri)).equals(data)).toBe(true);
    expect((await second.host.scrub()).divergent).toEqual([]);
  }, 60_000);

  it('a takeover after a crash in the middle of unflushed writes makes the replicas agree again', async () => {
    const first = await startHost('node-1', 'takeover');
    const data = randomBytes(SIZE);
    await copyIn(first.uri, data);
    let writes = 0;
    const hook = first.host.nbd?.onRequest;
    if (first.host.nbd !== undefined)
      first.host.nbd.onRequest = (op, ...rest) => {
        if (op === 'write') writes++;
        hook?.(op, ...rest);
      };
    // Writes to the second half only, never flushed; the engine dies under them.
    const workload = fio(first.uri, ['--offset=8M', '--size=8M', '--do_verify=0', '--verify=0']);
    await waitFor('the workload to get going', async () => writes >= 200, WAIT_MS);
    await first.host.rebuilder.stop();
    first.host.set.closeLinks();
    await first.host.nbd?.close();
    await workload; // fails: its engine is gone
    const second = await startHost('node-2', 'takeover');
    expect(second.host.resync).toBeDefined(); // the replicas said dirty
    expect((await second.host.scrub()).divergent).toEqual([]);
    const after = await copyOut(second.uri);
    expect(after.subarray(0, SIZE / 2).equals(data.subarray(0, SIZE / 2))).toBe(true);
  }, 60_000);

  it('two engines on the same replicas (migration) see each other’s flushed writes', async () => {
    const a = await startHost('node-1', 'takeover');
    const b = await startHost('node-2', 'join');
    expect((await dp.store.read()).engines.map((e) => e.id)).toEqual([a.host.engineId, b.host.engineId]);
    const first = randomBytes(SIZE);
    await copyIn(a.uri, first);
    expect((await copyOut(b.uri)).equals(first)).toBe(true);
    const second = randomBytes(SIZE);
    await copyIn(b.uri, second);
    expect((await copyOut(a.uri)).equals(second)).toBe(true);
    // The migration completes: the source leaves and the target is alone again.
    await a.host.stop({ leave: true });
    expect((await dp.store.read()).engines.map((e) => e.id)).toEqual([b.host.engineId]);
    expect((await copyOut(b.uri)).equals(second)).toBe(true);
    expect(b.host.set.shared).toBe(false);
  }, 60_000);
});

/** Speaks the replica protocol by hand: greeting, then `frames(nonce)`; returns what came back. */
function rawSession(address: string, frames: (nonce: Buffer) => Parameters<typeof encodeFrame>[0][]) {
  const [host, port] = address.split(':');
  return new Promise<DecodedFrame[]>((resolve, reject) => {
    const socket: Socket = connect({ host, port: Number(port) });
    const decoder = new FrameDecoder({ accept: 'any' });
    const replies: DecodedFrame[] = [];
    const timer = setTimeout(() => socket.destroy(), 3000);
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      for (const item of decoder.push(chunk)) {
        if (item.type === 'frame' && item.frame.kind === 'greeting') {
          for (const frame of frames(item.frame.nonce)) socket.write(encodeFrame(frame));
        } else replies.push(item);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(replies);
    });
  });
}
