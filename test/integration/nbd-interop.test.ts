import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../lib/exec.js';
import { type MemoryNbdServer, startMemoryNbdServer } from '../harness/memory-nbd-server.js';

/** Tandem's NBD codec against real clients: libnbd's nbdinfo and nbdcopy. */
describe('NBD protocol interoperability', () => {
  const size = 8 * 1024 * 1024;
  let dir: string;
  let socket: string;
  let server: MemoryNbdServer;
  const uri = (name = 'disk') => `nbd+unix:///${name}?socket=${socket}`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nbd-'));
    socket = join(dir, 'nbd.sock');
    server = await startMemoryNbdServer(socket, 'disk', size);
  });
  afterAll(async () => server?.close());

  it('negotiates with nbdinfo: size, flags and multi-conn as advertised', async () => {
    const info = JSON.parse((await run('nbdinfo', ['--json', uri()], { timeoutMs: 10_000 })).stdout) as {
      exports: {
        'export-name': string;
        'export-size': number;
        can_flush: boolean;
        can_fua: boolean;
        can_trim: boolean;
        can_zero: boolean;
        can_multi_conn: boolean;
        is_read_only: boolean;
        block_size_preferred?: number;
      }[];
    };
    expect(info.exports[0]).toMatchObject({
      'export-name': 'disk',
      'export-size': size,
      can_flush: true,
      can_fua: true,
      can_trim: true,
      can_zero: true,
      can_multi_conn: true,
      is_read_only: false,
    });
    expect(info.exports[0]?.block_size_preferred).toBe(4096);
  });

  it('lists exports and refuses an unknown one', async () => {
    const list = await run('nbdinfo', ['--list', '--json', uri('')], { timeoutMs: 10_000 });
    expect(JSON.parse(list.stdout).exports.map((e: { 'export-name': string }) => e['export-name'])).toEqual([
      'disk',
    ]);
    const unknown = await run('nbdinfo', [uri('nope')], { timeoutMs: 10_000, allowFailure: true });
    expect(unknown.code).not.toBe(0);
  });

  it('round-trips data written and read by nbdcopy over several connections', async () => {
    const input = join(dir, 'in.img');
    const output = join(dir, 'out.img');
    const pattern = randomBytes(size);
    await writeFile(input, pattern);
    await run('nbdcopy', ['--connections=4', '--request-size=65536', input, uri()], { timeoutMs: 60_000 });
    expect(server.data.equals(pattern)).toBe(true);
    await run('nbdcopy', ['--connections=4', uri(), output], { timeoutMs: 60_000 });
    expect((await readFile(output)).equals(pattern)).toBe(true);
  });

  it('zeroes ranges with WRITE_ZEROES/TRIM (nbdcopy of a sparse source)', async () => {
    const zeros = join(dir, 'zeros.img');
    await run('truncate', ['-s', String(size), zeros]);
    await run('nbdcopy', [zeros, uri()], { timeoutMs: 60_000 });
    expect(server.data.every((b) => b === 0)).toBe(true);
  });
});
