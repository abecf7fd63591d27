import { silentLogger } from '../../lib/log.js';
import { GrowthWatch } from './grow.js';

const MiB = 1024 * 1024;

function watch(served: () => number | undefined, grow: () => Promise<number>) {
  return new GrowthWatch({
    volumeId: 'pvc-1',
    socketPath: '/run/tandem/engines/pvc-1.sock',
    attachedBytes: 128 * MiB,
    intervalMs: 60_000,
    probe: async (_socket, names) => names.map(() => served()),
    grow,
    logger: silentLogger(),
  });
}

test('grows only when the engine serves more than the device has, once per new size', async () => {
  let engine = 128 * MiB;
  let grown = 0;
  const w = watch(
    () => engine,
    async () => {
      grown++;
      return engine;
    },
  );
  await w.check();
  expect(grown).toBe(0);
  engine = 256 * MiB;
  await w.check();
  await w.check();
  expect(grown).toBe(1);
  expect(w.sizeBytes).toBe(256 * MiB);
});

test('an engine that does not answer, or a grow that fails, is retried at the next check and never throws', async () => {
  let engine: number | undefined;
  let fail = true;
  const w = watch(
    () => engine,
    async () => {
      if (fail) throw new Error('resize2fs: Device or resource busy');
      return 512 * MiB;
    },
  );
  await expect(w.check()).resolves.toBeUndefined();
  engine = 512 * MiB;
  await expect(w.check()).resolves.toBeUndefined();
  expect(w.sizeBytes).toBe(128 * MiB);
  fail = false;
  await w.check();
  expect(w.sizeBytes).toBe(512 * MiB);
});
