import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../lib/log.js';
import { MemoryBlockDevice, startMemoryNbdServer } from '../../test/harness/memory-nbd-server.js';
import { NbdClient } from './client.js';
import { NBD_CMD } from './constants.js';
import { type BlockDevice, NbdIoError } from './device.js';
import { RelayDevice } from './relay-device.js';
import { NbdServer } from './server.js';

const SIZE = 1024 * 1024;

describe('the NBD relay device', () => {
  let dir: string;
  let socket: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-relay-'));
    socket = join(dir, 'engine.sock');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const open = (maxPauseMs = 10_000) =>
    RelayDevice.open({ socketPath: socket, exportName: 'vol', log: silentLogger(), maxPauseMs, retryMs: 20 });

  it('passes reads, writes, flushes and zeroing through, and learns the export', async () => {
    const engine = await startMemoryNbdServer(socket, 'vol', SIZE);
    const relay = await open();
    try {
      expect(relay.size).toBe(SIZE);
      const data = randomBytes(8192);
      await relay.write(4096, data, false);
      await relay.flush();
      expect((await relay.read(4096, 8192)).equals(data)).toBe(true);
      await relay.writeZeroes(4096, 4096, false, false);
      expect((await relay.read(4096, 4096)).equals(Buffer.alloc(4096))).toBe(true);
      expect(engine.data.subarray(8192, 12288).equals(data.subarray(4096))).toBe(true);
    } finally {
      relay.close();
      await engine.close();
    }
  });

  it('keeps writing across a restart of the engine: nothing fails, nothing acknowledged is lost', async () => {
    let engine = await startMemoryNbdServer(socket, 'vol', SIZE);
    const relay = await open();
    const written = new Map<number, Buffer>();
    let running = true;
    let errors = 0;
    const writer = (async () => {
      for (let i = 0; running; i++) {
        const block = i % 256;
        const data = randomBytes(4096);
        try {
          await relay.write(block * 4096, data, false);
          written.set(block, data);
        } catch {
          errors++;
        }
      }
    })();
    await sleep(100);
    // The engine dies; a new one (same socket) serves what the replicas hold — every write the
    // old one acknowledged, as a replicated engine's successor does.
    await engine.close();
    const kept = Buffer.from(engine.data);
    await sleep(300);
    engine = await startMemoryNbdServer(socket, 'vol', SIZE);
    kept.copy(engine.data);
    await sleep(200);
    running = false;
    await writer;
    try {
      expect(errors).toBe(0);
      expect(relay.outagesMs).toHaveLength(1);
      expect(relay.outagesMs[0]).toBeGreaterThanOrEqual(250);
      for (const [block, data] of written)
        expect(engine.data.subarray(block * 4096, (block + 1) * 4096).equals(data)).toBe(true);
    } finally {
      relay.close();
      await engine.close();
    }
  });

  it('asks again when the engine answers ESHUTDOWN (it left the volume), and passes other errors on', async () => {
    const memory = new MemoryBlockDevice(SIZE);
    let refuse = 1;
    const device: BlockDevice = {
      read: (o, l) => memory.read(o, l),
      write: async (o, d, f) => {
        if (refuse-- > 0) throw new NbdIoError('ESHUTDOWN', 'this engine left the volume');
        return memory.write(o, d, f);
      },
      flush: () => memory.flush(),
      trim: async () => {
        throw new NbdIoError('ENOSPC', 'a replica is full');
      },
      writeZeroes: (o, l) => memory.writeZeroes(o, l),
    };
    const engine = new NbdServer({ exportName: 'vol', size: SIZE, device, multiConn: true });
    await engine.listenUnix(socket);
    const relay = await open();
    try {
      await relay.write(0, Buffer.alloc(4096, 7), false);
      expect(memory.data[0]).toBe(7);
      expect(relay.outagesMs).toHaveLength(1);
      await expect(relay.trim(0, 4096, false)).rejects.toMatchObject({ errno: 'ENOSPC' });
    } finally {
      relay.close();
      await engine.close();
    }
  });

  it('fails a request with EIO once the engine has been away longer than the pause it may wait', async () => {
    const engine = await startMemoryNbdServer(socket, 'vol', SIZE);
    const relay = await open(1000);
    await engine.close();
    try {
      const started = Date.now();
      await expect(relay.read(0, 4096)).rejects.toMatchObject({ errno: 'EIO' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    } finally {
      relay.close();
    }
  });

  it('refuses to start without an engine, saying which socket', async () => {
    await expect(open()).rejects.toThrow(socket);
  });
});

describe('the NBD client', () => {
  it("reports the server's refusal of an export in its words", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-nbd-client-'));
    const socket = join(dir, 'nbd.sock');
    const engine = await startMemoryNbdServer(socket, 'vol', SIZE);
    try {
      await expect(NbdClient.connect(socket, 'other')).rejects.toThrow(/refused export "other"/);
      const client = await NbdClient.connect(socket, 'vol');
      const reply = await client.request({ command: NBD_CMD.READ, offset: SIZE, length: 4096 });
      expect(reply.errno).not.toBe(0); // past the end
      client.close();
    } finally {
      await engine.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
