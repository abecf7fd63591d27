import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startMemoryNbdServer } from '../harness/memory-nbd-server.js';
import { seededRandom } from '../harness/random.js';
import { BLOCK, blockContent, classify, Ledger } from './ledger.js';

describe('classify', () => {
  it('accepts the acknowledged write and indeterminate later ones, nothing else', () => {
    expect(classify(blockContent(7, 10), 7, 10, [])).toBeUndefined();
    expect(classify(blockContent(7, 12), 7, 10, [12])).toBeUndefined();
    expect(classify(blockContent(7, 9), 7, 10, [])).toBe('lost');
    expect(classify(Buffer.alloc(BLOCK), 7, 10, [])).toBe('lost');
    // An indeterminate first write that did not land leaves zeros.
    expect(classify(Buffer.alloc(BLOCK), 7, 0, [3])).toBeUndefined();
    expect(classify(blockContent(8, 10), 7, 10, [])).toBe('corrupt');
    const flipped = blockContent(7, 10);
    flipped[100] = (flipped[100] ?? 0) ^ 1;
    expect(classify(flipped, 7, 10, [])).toBe('corrupt');
    expect(classify(Buffer.alloc(BLOCK, 0xab), 7, 10, [])).toBe('corrupt');
    // Zeros after an acknowledged WRITE_ZEROES; a written block after it is fine only if later.
    const zeroes = (seq: number) => seq === 10 || seq === 14;
    expect(classify(Buffer.alloc(BLOCK), 7, 10, [], zeroes)).toBeUndefined();
    expect(classify(Buffer.alloc(BLOCK), 7, 12, [14], zeroes)).toBeUndefined();
    expect(classify(Buffer.alloc(BLOCK), 7, 12, [], zeroes)).toBe('lost');
    expect(classify(blockContent(7, 9), 7, 10, [], zeroes)).toBe('lost');
  });
});

describe('the ledger workload', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-ledger-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('finds nothing wrong on a device that keeps every write, and finds a write taken back', async () => {
    const socket = join(dir, 'nbd.sock');
    const server = await startMemoryNbdServer(socket, 'vol', 256 * BLOCK);
    try {
      const ledger = new Ledger({
        blocks: 256,
        depth: 4,
        target: () => socket,
        exportName: 'vol',
        random: seededRandom(1),
      });
      ledger.start();
      await sleep(300);
      await ledger.stop();
      expect(ledger.stats.acknowledged).toBeGreaterThan(50);
      expect(await ledger.check(socket)).toMatchObject({ lost: 0, corrupt: 0 });
      // Put back an older version of a written block: the ledger must call it lost.
      const written = [...Array(256).keys()].find((i) => server.data.readUInt32LE(i * BLOCK + 12) > 0) ?? -1;
      const seq = server.data.readUInt32LE(written * BLOCK + 12);
      blockContent(written, seq - 1).copy(server.data, written * BLOCK);
      const check = await ledger.check(socket);
      expect(check).toMatchObject({ lost: 1, corrupt: 0 });
      expect(check.examples[0]).toContain(`block ${written}: lost`);
    } finally {
      await server.close();
    }
  });

  it('reconnects after the server goes away and counts the writes in flight as indeterminate', async () => {
    const socket = join(dir, 'nbd.sock');
    let server = await startMemoryNbdServer(socket, 'vol', 64 * BLOCK);
    const ledger = new Ledger({
      blocks: 64,
      depth: 2,
      target: () => socket,
      exportName: 'vol',
      random: seededRandom(2),
    });
    ledger.start();
    await sleep(150);
    await server.close();
    const kept = Buffer.from(server.data);
    server = await startMemoryNbdServer(socket, 'vol', 64 * BLOCK);
    kept.copy(server.data);
    try {
      await sleep(400);
      await ledger.stop();
      expect(ledger.stats.reconnects).toBeGreaterThan(0);
      expect(await ledger.check(socket)).toMatchObject({ lost: 0, corrupt: 0 });
    } finally {
      await server.close();
    }
  });
});
