import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../lib/log.js';
import { FakeNetwork } from '../../test/harness/fake-network.js';
import { EngineHost } from './host.js';
import { MemoryMembershipStore } from './memory-membership.js';

const SIZE = 4 * 1024 * 1024;

describe('EngineHost.start', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-host-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('leaves no member behind when the NBD socket cannot be bound, so a retry starts clean', async () => {
    const net = new FakeNetwork(SIZE);
    for (const node of ['node-1', 'node-2']) net.add(node, 1n);
    const store = new MemoryMembershipStore({ ...net.record(1), sizeBytes: SIZE }, 'vol');
    // A regular file where the socket's directory should be: listen fails after the takeover.
    await writeFile(join(dir, 'not-a-dir'), '');
    const start = (socket: string) =>
      EngineHost.start({
        volume: 'vol',
        node: 'node-1',
        secret: Buffer.alloc(32, 1),
        store,
        mode: 'takeover',
        nbdSocket: socket,
        log: silentLogger(),
        rebuild: { enabled: false },
        connect: net.connector('host'),
      });
    await expect(start(join(dir, 'not-a-dir', 'vol.sock'))).rejects.toThrow();
    const afterFailure = await store.read();
    expect(afterFailure.engines).toEqual([]);

    const host = await start(join(dir, 'vol.sock'));
    try {
      const record = await store.read();
      expect(record.engines).toHaveLength(1);
      expect(record.epoch).toBeGreaterThan(afterFailure.epoch);
    } finally {
      await host.stop({ leave: true });
    }
  });
});
