import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBlockDevice } from '../../test/harness/memory-nbd-server.js';
import { GROWABLE_EXPORT_BYTES, growableExportName } from './growable.js';
import { probeExportSizes } from './probe.js';
import { NbdServer } from './server.js';

describe('probeExportSizes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nbd-probe-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('reads the sizes a new connection is offered, undefined for unknown names, and leaves no connection', async () => {
    const socket = join(dir, 'nbd.sock');
    const server = new NbdServer({
      exportName: 'pvc-1',
      size: 1 << 20,
      device: new MemoryBlockDevice(4 << 20),
      multiConn: true,
      growable: true,
    });
    await server.listenUnix(socket);
    try {
      expect(await probeExportSizes(socket, ['pvc-1', growableExportName('pvc-1'), 'other'])).toEqual([
        1 << 20,
        GROWABLE_EXPORT_BYTES,
        undefined,
      ]);
      server.resize(4 << 20);
      expect(await probeExportSizes(socket, ['pvc-1'])).toEqual([4 << 20]);
      for (let i = 0; i < 50 && server.connections > 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(server.connections).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('fails when nothing answers, on a peer that is no NBD server, and after its timeout', async () => {
    await expect(probeExportSizes(join(dir, 'none.sock'), ['x'])).rejects.toThrow(/ENOENT/);
    const garbage = join(dir, 'garbage.sock');
    const silent = join(dir, 'silent.sock');
    const a = createServer((s) => s.end(Buffer.alloc(18, 1)));
    const b = createServer(() => undefined);
    await new Promise<void>((r) => a.listen(garbage, r));
    await new Promise<void>((r) => b.listen(silent, r));
    try {
      await expect(probeExportSizes(garbage, ['x'])).rejects.toThrow(/fixed-newstyle/);
      await expect(probeExportSizes(silent, ['x'], 100)).rejects.toThrow(/within 100 ms/);
    } finally {
      b.close();
      a.close();
    }
  });
});
