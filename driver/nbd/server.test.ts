import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeferredDevice, settle, waitFor } from '../../test/harness/deferred-device.js';
import { MemoryBlockDevice } from '../../test/harness/memory-nbd-server.js';
import { NbdTestClient } from '../../test/harness/nbd-test-client.js';
import { MAX_VOLUME_BYTES } from '../controller/create-volume.js';
import { NBD_CMD, NBD_CMD_FLAG, NBD_ERRNO, NBD_TX_FLAG } from './constants.js';
import { GROWABLE_EXPORT_BYTES, growableExportName } from './growable.js';
import { type BlockDevice, NbdIoError, NbdServer, type NbdServerOptions } from './server.js';

const SIZE = 1024 * 1024;
const { READ, WRITE, FLUSH, TRIM, WRITE_ZEROES } = NBD_CMD;

describe('NbdServer', () => {
  let dir: string;
  let path: string;
  const servers: NbdServer[] = [];
  const clients: NbdTestClient[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nbd-server-'));
    path = join(dir, 'nbd.sock');
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await Promise.all(servers.splice(0).map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });

  async function serve(device: BlockDevice, options: Partial<NbdServerOptions> = {}): Promise<NbdServer> {
    const server = new NbdServer({ exportName: 'disk', size: SIZE, device, multiConn: false, ...options });
    servers.push(server);
    await server.listenUnix(path);
    return server;
  }

  async function client(): Promise<NbdTestClient> {
    const c = await NbdTestClient.connect(path);
    clients.push(c);
    return c;
  }

  it('serves reads, writes with FUA, flush, trim and write-zeroes, and reports each request', async () => {
    const device = new MemoryBlockDevice(SIZE);
    const seen: [string, number, boolean][] = [];
    await serve(device, {
      onRequest: (op, bytes, seconds, ok) => seen.push([op, bytes, ok && seconds >= 0]),
    });
    const c = await client();
    expect(c.size).toBe(BigInt(SIZE));
    expect(c.transmissionFlags & NBD_TX_FLAG.CAN_MULTI_CONN).toBe(0);

    const pattern = Buffer.alloc(8192, 0xab);
    expect(
      (await c.request({ command: WRITE, offset: 4096, payload: pattern, flags: NBD_CMD_FLAG.FUA })).errno,
    ).toBe(0);
    expect(device.fuaWrites).toBe(1);
    expect((await c.request({ command: READ, offset: 4096, length: 8192 })).data).toEqual(pattern);
    expect((await c.request({ command: FLUSH })).errno).toBe(0);
    expect(device.flushes).toBe(1);
    await c.request({ command: TRIM, offset: 4096, length: 4096 });
    await c.request({ command: WRITE_ZEROES, offset: 8192, length: 2048, flags: NBD_CMD_FLAG.NO_HOLE });
    const after = await c.request({ command: READ, offset: 4096, length: 8192 });
    expect(after.data?.subarray(0, 6144).every((b) => b === 0)).toBe(true);
    expect(after.data?.subarray(6144).every((b) => b === 0xab)).toBe(true);
    expect((await c.request({ command: READ, offset: 0, length: 0 })).errno).toBe(0);
    expect(seen.slice(0, 6)).toEqual([
      ['write', 8192, true],
      ['read', 8192, true],
      ['flush', 0, true],
      ['trim', 4096, true],
      ['write_zeroes', 2048, true],
      ['read', 8192, true],
    ]);
  });

  it('executes requests concurrently and replies in completion order', async () => {
    const device = new DeferredDevice();
    await serve(device);
    const c = await client();
    const prepared = Array.from({ length: 32 }, (_, i) =>
      c.prepare({ command: READ, offset: i * 4096, length: 4096 }),
    );
    c.socket.write(Buffer.concat(prepared.map((p) => p.bytes)));
    await waitFor(() => device.calls.length === 32);
    for (const call of [...device.calls].reverse()) call.resolve(Buffer.alloc(4096, call.offset / 4096));
    const replies = await Promise.all(prepared.map((p) => p.promise));
    expect(replies.every((r, i) => r.data?.every((b) => b === i))).toBe(true);
    expect(c.replyOrder).toEqual(replies.map((r) => r.cookie).reverse());
  });

  it('hands the device intact WRITE payloads even when it holds them while more data arrives', async () => {
    const device = new DeferredDevice();
    await serve(device);
    const c = await client();
    const writes = Array.from({ length: 64 }, (_, i) =>
      c.prepare({ command: WRITE, offset: i * 4096, payload: Buffer.alloc(4096 + (i % 3) * 100, i) }),
    );
    // Several requests per chunk and requests split across chunks.
    const stream = Buffer.concat(writes.map((w) => w.bytes));
    for (let pos = 0; pos < stream.length; pos += 10_000) c.socket.write(stream.subarray(pos, pos + 10_000));
    await waitFor(() => device.calls.length === 64);
    const reads = Array.from({ length: 8 }, () => c.request({ command: READ, offset: 0, length: 65536 }));
    await waitFor(() => device.calls.length === 72);
    for (const call of device.calls) call.resolve(Buffer.alloc(call.length, 0xff));
    await Promise.all([...writes.map((w) => w.promise), ...reads]);
    device.calls.slice(0, 64).forEach((call, i) => {
      expect(call.data?.length).toBe(4096 + (i % 3) * 100);
      expect(call.data?.every((b) => b === i)).toBe(true);
    });
  });

  it('stops reading requests at maxInFlight and resumes as they finish', async () => {
    const device = new DeferredDevice();
    await serve(device, { maxInFlight: 4 });
    const c = await client();
    const replies = Array.from({ length: 10 }, (_, i) => c.request({ command: READ, offset: i, length: 1 }));
    await waitFor(() => device.calls.length === 4);
    await settle();
    expect(device.calls).toHaveLength(4);
    device.calls[2]?.resolve();
    await waitFor(() => device.calls.length === 5);
    await settle();
    expect(device.calls).toHaveLength(5);
    await waitFor(() => {
      for (const call of device.pending) call.resolve();
      return device.calls.length === 10 && device.pending.length === 0;
    });
    expect((await Promise.all(replies)).every((r) => r.errno === 0)).toBe(true);
  });

  it('bounds the bytes of executing reads and unsent replies when the client stops reading', async () => {
    const device = new MemoryBlockDevice(SIZE);
    let reads = 0;
    const counting: BlockDevice = Object.assign(Object.create(device), {
      read: (offset: number, length: number) => {
        reads++;
        return device.read(offset, length);
      },
    });
    await serve(counting, { maxQueuedBytes: 2 * 1024 * 1024 });
    const c = await client();
    c.socket.pause();
    const replies = Array.from({ length: 100 }, () => c.request({ command: READ, offset: 0, length: SIZE }));
    await settle(300);
    // 2 MiB of queue plus what the kernel's socket buffers hold: far from 100 MiB.
    expect(reads).toBeGreaterThan(0);
    expect(reads).toBeLessThan(12);
    c.socket.resume();
    expect((await Promise.all(replies)).every((r) => r.data?.length === SIZE)).toBe(true);
    expect(reads).toBe(100);
  });

  it('on NBD_CMD_DISC finishes executing requests, replies, then closes', async () => {
    const device = new DeferredDevice();
    await serve(device);
    const c = await client();
    const write = c.request({ command: WRITE, offset: 0, payload: Buffer.alloc(512, 1) });
    await c.request({ command: NBD_CMD.DISC });
    await waitFor(() => device.calls.length === 1);
    let closed = false;
    void c.closed.then(() => {
      closed = true;
    });
    await settle();
    expect(closed).toBe(false);
    device.calls[0]?.resolve();
    expect((await write).errno).toBe(0);
    await c.closed;
  });

  it('answers a client that half-closes after sending its requests', async () => {
    await serve(new MemoryBlockDevice(SIZE));
    const c = await client();
    const reply = c.request({ command: READ, offset: 0, length: 4096 });
    c.socket.end();
    expect((await reply).data?.length).toBe(4096);
    await c.closed;
  });

  it('maps device failures to NBD errnos', async () => {
    const device = new DeferredDevice();
    const outcomes: boolean[] = [];
    await serve(device, { onRequest: (_op, _bytes, _s, ok) => outcomes.push(ok) });
    const c = await client();
    const replies = [
      c.request({ command: WRITE, offset: 0, payload: Buffer.alloc(16) }),
      c.request({ command: FLUSH }),
      c.request({ command: READ, offset: 0, length: 4096 }),
      c.request({ command: TRIM, offset: 0, length: 4096 }),
    ];
    await waitFor(() => device.calls.length === 4);
    device.calls[0]?.reject(new NbdIoError('ENOSPC', 'replica full'));
    device.calls[1]?.reject(new Error('replica gone'));
    device.calls[2]?.resolve(Buffer.alloc(100)); // short read: a device bug, never a corrupt stream
    device.calls[3]?.reject(new NbdIoError('ESHUTDOWN'));
    expect((await Promise.all(replies)).map((r) => [r.errno, r.data])).toEqual([
      [NBD_ERRNO.ENOSPC, undefined],
      [NBD_ERRNO.EIO, undefined],
      [NBD_ERRNO.EIO, undefined],
      [NBD_ERRNO.ESHUTDOWN, undefined],
    ]);
    expect(outcomes).toEqual([false, false, false, false]);
    expect((await c.request({ command: READ, offset: 0, length: 0 })).errno).toBe(0);
  });

  it('refuses invalid requests with an errno and keeps the connection', async () => {
    await serve(new MemoryBlockDevice(SIZE), { readOnly: true });
    const c = await client();
    expect(c.transmissionFlags & NBD_TX_FLAG.READ_ONLY).not.toBe(0);
    expect((await c.request({ command: READ, offset: SIZE, length: 1 })).errno).toBe(NBD_ERRNO.EINVAL);
    expect((await c.request({ command: WRITE, offset: 0, payload: Buffer.alloc(8) })).errno).toBe(
      NBD_ERRNO.EPERM,
    );
    expect((await c.request({ command: READ, offset: 0, length: 8 })).data).toEqual(Buffer.alloc(8));
  });

  it('drops a connection that breaks the protocol and keeps serving others', async () => {
    const server = await serve(new MemoryBlockDevice(SIZE));
    const good = await client();
    const bad = await client();
    const midHandshake = await NbdTestClient.connect(path, 'disk', false);
    await midHandshake.take(18);
    midHandshake.close();
    bad.socket.write(Buffer.alloc(64, 0x55));
    await bad.closed;
    expect((await good.request({ command: READ, offset: 0, length: 16 })).errno).toBe(0);
    await waitFor(() => server.connections === 1);
  });

  it('drops a client that does not finish the handshake in time', async () => {
    await serve(new MemoryBlockDevice(SIZE), { handshakeTimeoutMs: 100 });
    const idle = await NbdTestClient.connect(path, 'disk', false);
    await idle.closed;
  });

  it('close() lets executing requests reply, refuses queued ones with ESHUTDOWN, then closes', async () => {
    const device = new DeferredDevice();
    const server = await serve(device, { maxInFlight: 1 });
    const c = await client();
    const first = c.request({ command: READ, offset: 0, length: 8 });
    const second = c.request({ command: READ, offset: 8, length: 8 });
    await waitFor(() => device.calls.length === 1);
    await settle(20);
    const closing = server.close();
    await settle(20);
    device.calls[0]?.resolve();
    expect((await first).errno).toBe(0);
    expect((await second).errno).toBe(NBD_ERRNO.ESHUTDOWN);
    await closing;
    await c.closed;
    expect(server.connections).toBe(0);
  });

  it('close() gives up on a hung device after closeTimeoutMs', async () => {
    const server = await serve(new DeferredDevice(), { closeTimeoutMs: 100 });
    const c = await client();
    void c.request({ command: FLUSH }).catch(() => {});
    await settle(20);
    const started = Date.now();
    await server.close();
    expect(Date.now() - started).toBeLessThan(2_000);
    await c.closed;
  });

  it('listens on unix sockets (stale file replaced, mode 0660) and TCP with port 0', async () => {
    await writeFile(join(dir, 'file'), 'not a socket');
    const server = new NbdServer({
      exportName: 'disk',
      size: SIZE,
      device: new MemoryBlockDevice(SIZE),
      multiConn: true,
    });
    servers.push(server);
    await expect(server.listenUnix(join(dir, 'file'))).rejects.toThrow(/not a socket/);
    // A process that exits without closing its listener leaves the socket file behind.
    const script = `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`;
    execFileSync(process.execPath, ['-e', script]);
    expect((await stat(path)).isSocket()).toBe(true);
    await server.listenUnix(path);
    expect((await stat(path)).mode & 0o777).toBe(0o660);
    const port = await server.listenTcp('127.0.0.1', 0);
    expect(port).toBeGreaterThan(0);
    const viaTcp = await NbdTestClient.connect({ host: '127.0.0.1', port });
    clients.push(viaTcp);
    expect(viaTcp.transmissionFlags & NBD_TX_FLAG.CAN_MULTI_CONN).not.toBe(0);
    clients.push(await NbdTestClient.connect(path));
    expect(server.connections).toBe(2);
  });

  it('resize() offers the new size to new connections; open ones keep what they negotiated', async () => {
    const device = new MemoryBlockDevice(4 * SIZE);
    const server = await serve(device);
    const before = await client();
    expect(server.size).toBe(SIZE);
    server.resize(4 * SIZE);
    expect(server.size).toBe(4 * SIZE);
    const after = await client();
    expect([before.size, after.size]).toEqual([BigInt(SIZE), BigInt(4 * SIZE)]);
    const last = Buffer.alloc(4096, 0x5c);
    const lastBlock = 4 * SIZE - 4096;
    expect((await after.request({ command: WRITE, offset: lastBlock, payload: last })).errno).toBe(0);
    expect((await after.request({ command: READ, offset: lastBlock, length: 4096 })).data).toEqual(last);
    // The older connection still checks against its own size (NBD cannot announce a resize).
    expect((await before.request({ command: READ, offset: lastBlock, length: 4096 })).errno).toBe(
      NBD_ERRNO.EINVAL,
    );
    expect((await before.request({ command: READ, offset: SIZE - 4096, length: 4096 })).errno).toBe(0);
    expect(() => server.resize(SIZE)).toThrow(RangeError);
    expect(() => server.resize(1.5)).toThrow(RangeError);
    expect(server.size).toBe(4 * SIZE);
  });

  it('offers a growable twin: huge, unlisted, bounded by the size resize() sets, even when already open', async () => {
    const device = new MemoryBlockDevice(4 * SIZE);
    const server = await serve(device, { growable: true });
    const growable = await NbdTestClient.connect(path, growableExportName('disk'));
    clients.push(growable);
    const plain = await client();
    expect(growable.size).toBe(BigInt(GROWABLE_EXPORT_BYTES));
    expect(plain.size).toBe(BigInt(SIZE));
    const block = Buffer.alloc(4096, 0x3c);
    const lastOld = SIZE - 4096;
    const lastNew = 4 * SIZE - 4096;
    expect((await growable.request({ command: WRITE, offset: lastOld, payload: block })).errno).toBe(0);
    expect((await growable.request({ command: READ, offset: lastOld, length: 4096 })).data).toEqual(block);
    // Past the volume's current size: refused like past the end of an export, nothing reaches the device.
    expect((await growable.request({ command: WRITE, offset: SIZE, payload: block })).errno).toBe(
      NBD_ERRNO.ENOSPC,
    );
    expect((await growable.request({ command: READ, offset: SIZE - 2048, length: 4096 })).errno).toBe(
      NBD_ERRNO.EINVAL,
    );
    expect((await growable.request({ command: TRIM, offset: lastNew, length: 4096 })).errno).toBe(
      NBD_ERRNO.EINVAL,
    );
    expect(device.data.subarray(SIZE).every((b) => b === 0)).toBe(true);

    server.resize(4 * SIZE);
    // The open growable connection follows; the open plain one keeps the size it negotiated.
    expect((await growable.request({ command: WRITE, offset: lastNew, payload: block })).errno).toBe(0);
    expect((await growable.request({ command: READ, offset: lastNew, length: 4096 })).data).toEqual(block);
    expect((await growable.request({ command: READ, offset: 4 * SIZE, length: 512 })).errno).toBe(
      NBD_ERRNO.EINVAL,
    );
    expect((await plain.request({ command: READ, offset: lastNew, length: 4096 })).errno).toBe(
      NBD_ERRNO.EINVAL,
    );
    expect((await client()).size).toBe(BigInt(4 * SIZE));
    // Without the option there is no twin.
    const other = join(dir, 'plain.sock');
    const single = new NbdServer({ exportName: 'disk', size: SIZE, device, multiConn: false });
    servers.push(single);
    await single.listenUnix(other);
    await expect(NbdTestClient.connect(other, growableExportName('disk'))).rejects.toThrow();
  });

  it('sizes the growable export as the largest volume', () => {
    expect(GROWABLE_EXPORT_BYTES).toBe(MAX_VOLUME_BYTES);
    expect(growableExportName('pvc-1.a')).toBe('pvc-1.a@growable');
  });
});
