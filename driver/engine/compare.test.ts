import { silentLogger } from '../../lib/log.js';
import { FakeNetwork, fakeEngine } from '../../test/harness/fake-network.js';
import { compareReplicas, copyBlock } from './compare.js';
import { EngineHost } from './host.js';
import { MemoryMembershipStore } from './memory-membership.js';

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;

async function threeReplicas(size = SIZE) {
  const net = new FakeNetwork(size);
  for (const node of ['node-1', 'node-2', 'node-3']) net.add(node, 1n);
  const store = new MemoryMembershipStore(net.record(1), 'vol');
  const a = fakeEngine(net, store, 'engine-a', 'node-1');
  await a.set.start('takeover');
  return { net, store, a };
}

describe('compareReplicas', () => {
  it('finds nothing on identical replicas and skips windows where no replica has data', async () => {
    const { a } = await threeReplicas();
    await a.engine.write(4096, Buffer.alloc(8192, 1), false);
    await a.engine.write(200 * MiB, Buffer.alloc(4096, 2), false);
    const report = await compareReplicas(a.set.readable(), { sizeBytes: SIZE });
    expect(report).toEqual({ comparedBytes: 128 * MiB, skippedBytes: 128 * MiB, divergent: [] });
  });

  it('reports each divergent block with the nodes that differ from the reference', async () => {
    const { net, a } = await threeReplicas();
    await a.engine.write(5 * MiB, Buffer.alloc(MiB, 3), false);
    net.replica('node-2').poke(5 * MiB + 100, Buffer.from([0]));
    net.replica('node-3').poke(70 * MiB + 4096, Buffer.from('only on node-3'));
    // Allocated zeroes and a hole hold the same bytes: not a divergence.
    net.replica('node-3').poke(130 * MiB, Buffer.alloc(4096));
    const report = await compareReplicas(a.set.readable(), { sizeBytes: SIZE, blockSize: MiB });
    expect(report.divergent).toEqual([
      { offset: 5 * MiB, length: MiB, nodes: ['node-2'] },
      { offset: 70 * MiB, length: MiB, nodes: ['node-3'] },
    ]);
    expect(report.comparedBytes).toBe(192 * MiB);
  });

  it('resync copies divergent blocks from the reference, after which the replicas agree', async () => {
    const { net, a } = await threeReplicas();
    await a.engine.write(0, Buffer.alloc(2 * MiB, 4), false);
    net.replica('node-2').poke(MiB + 7, Buffer.from('torn'));
    net.replica('node-3').poke(100 * MiB, Buffer.from('a write the others never got'));
    const fixed = await compareReplicas(a.set.readable(), {
      sizeBytes: SIZE,
      blockSize: 64 * 1024,
      lock: a.engine.lock,
      onDivergence: copyBlock,
    });
    expect(fixed.divergent.map((d) => [d.offset, d.nodes])).toEqual([
      [MiB, ['node-2']],
      [100 * MiB, ['node-3']],
    ]);
    const again = await compareReplicas(a.set.readable(), { sizeBytes: SIZE, blockSize: 64 * 1024 });
    expect(again.divergent).toEqual([]);
    expect(net.identical()).toBe(true);
    expect(net.replica('node-3').peek(100 * MiB, 28)).toEqual(Buffer.alloc(28));
  });

  it.each([
    [true, 0],
    [false, 1],
  ])(
    'with the range lock (%s) a write racing the hashes shows %i divergent blocks',
    async (locked, count) => {
      const { net, a } = await threeReplicas(4 * MiB);
      await a.engine.write(0, Buffer.alloc(4096, 1), false);
      // node-1 hashes at once, node-2 and node-3 slowly: a write landing in between differs.
      for (const node of ['node-2', 'node-3']) net.replica(node).latency = (op) => (op === 'hash' ? 150 : 0);
      const comparing = compareReplicas(a.set.readable(), {
        sizeBytes: 4 * MiB,
        blockSize: MiB,
        ...(locked ? { lock: a.engine.lock } : {}),
      });
      // The write starts once node-1 has hashed the first block (not after a fixed 10 ms: on a busy
      // machine the slow hashes' timers could fire in the same turn, before the write applied).
      while (net.replica('node-1').served.hash === 0) await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      await a.engine.write(0, Buffer.alloc(4096, 2), false);
      expect((await comparing).divergent).toHaveLength(count);
    },
  );
});

describe('EngineHost takeover of a dirty volume', () => {
  it('resyncs blocks a dead engine left different before serving reads', async () => {
    const net = new FakeNetwork(64 * MiB);
    for (const node of ['node-1', 'node-2']) net.add(node, 3n);
    net.replica('node-1').poke(0, Buffer.alloc(MiB, 9));
    net.replica('node-2').poke(0, Buffer.alloc(MiB, 9));
    // The previous engine died with a write on node-2 only.
    net.replica('node-2').poke(40 * MiB, Buffer.alloc(4096, 8));
    for (const r of net.replicas.values()) r.dirty = true;
    const store = new MemoryMembershipStore(
      { ...net.record(3), engines: [{ node: 'node-9', id: 'dead-engine' }] },
      'vol',
    );
    const host = await EngineHost.start({
      volume: 'vol',
      node: 'node-1',
      secret: Buffer.alloc(32),
      store,
      mode: 'takeover',
      log: silentLogger(),
      rebuild: { enabled: false },
      connect: net.connector('host'),
    });
    try {
      expect(host.resync?.divergent.map((d) => [d.offset, d.nodes])).toEqual([[40 * MiB, ['node-2']]]);
      expect(net.identical()).toBe(true);
      expect((await host.scrub()).divergent).toEqual([]);
      expect((await store.read()).engines.map((e) => e.id)).toEqual([host.engineId]);
    } finally {
      await host.stop({ leave: true });
    }
  });
});
