import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NBD_CMD } from '../../driver/nbd/constants.js';
import { NbdIoError, NbdServer } from '../../driver/nbd/server.js';
import { run } from '../../lib/exec.js';
import { fioVerify } from '../harness/fio.js';
import { MemoryBlockDevice } from '../harness/memory-nbd-server.js';
import { NbdTestClient } from '../harness/nbd-test-client.js';

interface NbdInfo {
  exports: { 'export-name': string; 'export-size': number; can_multi_conn: boolean; is_read_only: boolean }[];
}

/** Tandem's production NBD server against real clients: libnbd's nbdinfo and nbdcopy, and fio. */
describe('NBD server with real clients', () => {
  const size = 32 * 1024 * 1024;
  let dir: string;
  const servers: NbdServer[] = [];
  const unixUri = (socket: string) => `nbd+unix:///disk?socket=${socket}`;

  async function start(device = new MemoryBlockDevice(size), multiConn = true) {
    const server = new NbdServer({ exportName: 'disk', size, device, multiConn });
    servers.push(server);
    const socket = join(dir, `nbd-${servers.length}.sock`);
    await server.listenUnix(socket);
    return { server, device, socket, uri: unixUri(socket) };
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nbd-server-'));
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it('shows size and flags to nbdinfo over unix and TCP, multi-conn only when configured', async () => {
    const withMulti = await start();
    const withoutMulti = await start(new MemoryBlockDevice(size), false);
    const port = await withoutMulti.server.listenTcp('127.0.0.1', 0);
    const info = async (uri: string) =>
      (JSON.parse((await run('nbdinfo', ['--json', uri], { timeoutMs: 10_000 })).stdout) as NbdInfo)
        .exports[0];
    const expected = { 'export-name': 'disk', 'export-size': size, is_read_only: false };
    expect(await info(withMulti.uri)).toMatchObject({ ...expected, can_multi_conn: true });
    expect(await info(`nbd://127.0.0.1:${port}/disk`)).toMatchObject({ ...expected, can_multi_conn: false });
    expect(await info(withoutMulti.uri)).toMatchObject({ ...expected, can_multi_conn: false });
  });

  it('copies 16 MiB in and back out with nbdcopy over four connections', async () => {
    const { device, uri } = await start();
    const input = join(dir, 'in.img');
    const output = join(dir, 'out.img');
    const pattern = randomBytes(16 * 1024 * 1024);
    await writeFile(input, pattern);
    await run('nbdcopy', ['--connections=4', '--requests=32', input, uri], { timeoutMs: 60_000 });
    expect(device.data.subarray(0, pattern.length).equals(pattern)).toBe(true);
    await run('nbdcopy', ['--connections=4', '--requests=32', uri, output], { timeoutMs: 60_000 });
    expect((await readFile(output)).subarray(0, pattern.length).equals(pattern)).toBe(true);
  });

  it('passes fio randwrite with crc32c verification at queue depth 32', async () => {
    const { uri } = await start();
    const result = await fioVerify(uri, {
      size: '32M',
      iodepth: 32,
      timeoutMs: 60_000,
      extra: ['--runtime=10'],
    });
    expect(result.stderr).not.toMatch(/verify: bad/);
    expect(result.code).toBe(0);
    // fio's nbd engine prints "fio: connected to NBD server" on stdout before the JSON.
    const job = (
      JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as {
        jobs: { error: number; read: { io_bytes: number }; write: { io_bytes: number } }[];
      }
    ).jobs[0];
    expect(job?.error).toBe(0);
    expect(job?.write.io_bytes).toBe(32 * 1024 * 1024);
    expect(job?.read.io_bytes).toBe(32 * 1024 * 1024); // the verify pass read everything back
  });

  it('reports a device ENOSPC to the client', async () => {
    const device = new MemoryBlockDevice(size);
    device.write = async () => {
      throw new NbdIoError('ENOSPC', 'replica full');
    };
    const { uri } = await start(device);
    const input = join(dir, 'small.img');
    await writeFile(input, randomBytes(1024 * 1024));
    const result = await run('nbdcopy', [input, uri], { timeoutMs: 30_000, allowFailure: true });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/No space/);
  });

  it('is not disturbed by clients that send garbage or leave mid-handshake', async () => {
    const { socket, uri } = await start();
    const established = await NbdTestClient.connect(socket);
    const garbage = connect(socket);
    garbage.on('error', () => {});
    garbage.resume();
    garbage.write(randomBytes(4096));
    const leaver = await NbdTestClient.connect(socket, 'disk', false);
    await leaver.take(18);
    leaver.close();
    await new Promise((resolve) => garbage.on('close', resolve));
    expect((await established.request({ command: NBD_CMD.READ, offset: 0, length: 4096 })).errno).toBe(0);
    await run('nbdinfo', [uri], { timeoutMs: 10_000 });
    established.close();
  });

  it('close() finishes while clients are connected', async () => {
    const { server, socket } = await start();
    const client = await NbdTestClient.connect(socket);
    const port = await server.listenTcp('127.0.0.1', 0);
    const overTcp = await NbdTestClient.connect({ host: '127.0.0.1', port });
    expect(server.connections).toBe(2);
    await server.close();
    await Promise.all([client.closed, overTcp.closed]);
    expect(server.connections).toBe(0);
  });
});
