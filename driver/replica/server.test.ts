/**
 * The replica server against hostile and careless peers, over a real socket: no request runs
 * before an authenticated HELLO, a wrong proof ends the connection, ranges outside the volume are
 * refused, and damaged frames end only their own connection — the server keeps serving, and the
 * data file never changes size (nothing is ever written outside the volume).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { silentLogger } from '../../lib/log.js';
import { seededRandom } from '../../test/harness/random.js';
import { ReplicaClient } from './client.js';
import {
  type DecodedFrame,
  encodeFrame,
  FrameDecoder,
  helloProof,
  type Reply,
  type Request,
} from './protocol.js';
import { ReplicaServer } from './server.js';
import { ReplicaStore } from './store.js';

const SIZE = 1024 * 1024;
const VOLUME = 'vol-hostile';

/** A raw peer: sends bytes, collects decoded replies, notices when the server hangs up. */
class RawPeer {
  readonly replies: Reply[] = [];
  nonce: Buffer | undefined;
  closed = false;
  readonly #socket: Socket;
  readonly #decoder = new FrameDecoder({ accept: 'replies' });
  readonly ready: Promise<void>;

  constructor(port: number) {
    this.#socket = connect({ host: '127.0.0.1', port });
    this.#socket.on('error', () => undefined);
    this.#socket.on('close', () => {
      this.closed = true;
    });
    this.ready = new Promise((resolve) => {
      this.#socket.on('data', (chunk: Buffer) => {
        for (const item of this.#decoder.push(chunk) as DecodedFrame[]) {
          if (item.type !== 'frame') continue;
          if (item.frame.kind === 'greeting') {
            this.nonce = item.frame.nonce;
            resolve();
          } else if (item.frame.kind === 'reply') this.replies.push(item.frame);
        }
      });
    });
  }

  send(data: Buffer | Request): void {
    this.#socket.write(Buffer.isBuffer(data) ? data : encodeFrame(data));
  }

  async settle(): Promise<void> {
    await new Promise((r) => setTimeout(r, 150));
  }

  end(): void {
    this.#socket.destroy();
  }
}

describe('replica server with hostile input', () => {
  let dir: string;
  let server: ReplicaServer;
  let port: number;
  const secret = randomBytes(32);
  const dataFile = () => join(dir, VOLUME, 'data');
  const client = () =>
    ReplicaClient.connect({
      address: `127.0.0.1:${port}`,
      volume: VOLUME,
      engineId: 'good',
      secret,
      epoch: 1n,
      requestTimeoutMs: 5000,
      log: silentLogger(),
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-replica-server-'));
    await (await ReplicaStore.create(dir, { volume: VOLUME, sizeBytes: SIZE, secret, epoch: 1 })).close();
    server = new ReplicaServer({ dataDir: dir, log: silentLogger() });
    port = await server.listen('127.0.0.1', 0);
  });

  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers AUTH_REQUIRED to every request before HELLO and writes nothing', async () => {
    const peer = new RawPeer(port);
    await peer.ready;
    const data = Buffer.alloc(4096, 0xee);
    peer.send({
      kind: 'request',
      op: 'WRITE',
      requestId: 1n,
      epoch: 9n,
      offset: 0n,
      length: 4096,
      fua: false,
      data,
    });
    peer.send({ kind: 'request', op: 'READ', requestId: 2n, epoch: 9n, offset: 0n, length: 4096 });
    await peer.settle();
    expect(peer.replies.map((r) => r.status)).toEqual(['AUTH_REQUIRED', 'AUTH_REQUIRED']);
    peer.end();
    const good = await client();
    expect((await good.read(0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    good.close();
  });

  it('refuses a wrong proof, closes the connection and ignores what follows', async () => {
    const peer = new RawPeer(port);
    await peer.ready;
    const proof = helloProof(randomBytes(32), peer.nonce as Buffer, VOLUME, 'intruder', 1n);
    peer.send({
      kind: 'request',
      op: 'HELLO',
      requestId: 1n,
      epoch: 1n,
      volume: VOLUME,
      engineId: 'intruder',
      proof,
    });
    const data = Buffer.alloc(4096, 0xab);
    peer.send({
      kind: 'request',
      op: 'WRITE',
      requestId: 2n,
      epoch: 1n,
      offset: 0n,
      length: 4096,
      fua: false,
      data,
    });
    await peer.settle();
    // Requests are handled concurrently: the WRITE is refused before the HELLO is even checked.
    expect(peer.replies.find((r) => r.op === 'HELLO')?.status).toBe('AUTH_FAILED');
    expect(peer.replies.some((r) => r.op === 'WRITE' && r.status === 'OK')).toBe(false);
    expect(peer.closed).toBe(true);
    const good = await client();
    expect((await good.read(0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    good.close();
  });

  it('refuses ranges outside the volume with OUT_OF_RANGE and keeps the file size', async () => {
    const good = await client();
    await expect(good.write(SIZE - 2048, Buffer.alloc(4096, 1), false)).rejects.toMatchObject({
      status: 'OUT_OF_RANGE',
    });
    await expect(good.read(SIZE, 1)).rejects.toMatchObject({ status: 'OUT_OF_RANGE' });
    await expect(good.trim(0, SIZE + 4096, false)).rejects.toMatchObject({ status: 'OUT_OF_RANGE' });
    await good.write(SIZE - 4096, Buffer.alloc(4096, 2), true);
    expect((await stat(dataFile())).size).toBe(SIZE);
    good.close();
  });

  it('survives 400 damaged frames and garbage streams; the volume stays inside its size', async () => {
    const random = seededRandom(4242);
    const templates: Buffer[] = [
      encodeFrame({ kind: 'request', op: 'READ', requestId: 1n, epoch: 1n, offset: 0n, length: 4096 }),
      encodeFrame({
        kind: 'request',
        op: 'WRITE',
        requestId: 2n,
        epoch: 1n,
        offset: 4096n,
        length: 512,
        fua: false,
        data: Buffer.alloc(512, 7),
      }),
      encodeFrame({
        kind: 'request',
        op: 'HASH',
        requestId: 3n,
        epoch: 1n,
        offset: 0n,
        length: 65536,
        blockSize: 4096,
      }),
      encodeFrame({
        kind: 'request',
        op: 'TRIM',
        requestId: 4n,
        epoch: 1n,
        offset: 0n,
        length: 8192,
        fua: false,
      }),
    ];
    for (let i = 0; i < 400; i++) {
      const peer = new RawPeer(port);
      await peer.ready;
      const good = i % 2 === 0;
      if (good) {
        const proof = helloProof(secret, peer.nonce as Buffer, VOLUME, `fuzz-${i}`, 1n);
        peer.send({
          kind: 'request',
          op: 'HELLO',
          requestId: 100n,
          epoch: 1n,
          volume: VOLUME,
          engineId: `fuzz-${i}`,
          proof,
        });
      }
      const frame = Buffer.from(templates[Math.floor(random() * templates.length)] as Buffer);
      const flips = 1 + Math.floor(random() * 4);
      for (let f = 0; f < flips; f++)
        frame[Math.floor(random() * Math.min(frame.length, 48))] = Math.floor(random() * 256);
      peer.send(random() < 0.2 ? randomBytes(1 + Math.floor(random() * 200)) : frame);
      if (i % 50 === 0) await peer.settle();
      peer.end();
    }
    await new Promise((r) => setTimeout(r, 300));
    const check = await client();
    expect((await check.read(SIZE - 4096, 4096)).equals(Buffer.alloc(4096, 2))).toBe(true);
    check.close();
    expect((await stat(dataFile())).size).toBe(SIZE);
  });

  it('refuses a HELLO with an epoch older than the replica and names the replica epoch', async () => {
    const newer = await ReplicaClient.connect({
      address: `127.0.0.1:${port}`,
      volume: VOLUME,
      engineId: 'newer',
      secret,
      epoch: 5n,
      requestTimeoutMs: 5000,
      log: silentLogger(),
    });
    await newer.probe();
    await expect(client()).rejects.toMatchObject({ status: 'STALE_EPOCH', replicaEpoch: 5n });
    newer.close();
  });
});
