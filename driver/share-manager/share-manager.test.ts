import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../lib/log.js';
import { FakeNodeOps } from '../../test/harness/fake-node-ops.js';
import { ShareManager } from './share-manager.js';

/** The kernel refuses the mount (xfs: "duplicate UUID", a corrupt superblock ...). */
class RefusingMount extends FakeNodeOps {
  override async mount(): Promise<void> {
    throw new Error(
      'mount -t ext4 /dev/loop0 exited with code 32: wrong fs type, bad option, bad superblock',
    );
  }
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'share-manager-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

test('a mount the kernel refuses fails the start in its words and leaves nothing attached', async () => {
  const ops = new RefusingMount();
  ops.answering.add('/run/engines/pvc-1.sock');
  await expect(
    ShareManager.start({
      volumeId: 'pvc-1',
      nodeId: 'node-2',
      stateDir: dir,
      engineSocketDir: '/run/engines',
      frontend: 'nbdfuse',
      bindAddress: '127.0.0.1',
      fsType: 'ext4',
      fastFailover: true,
      logger: silentLogger(),
      engineWaitMs: 50,
      ops,
    }),
  ).rejects.toThrow(/bad superblock/);
  // Attached, then detached by the failed start itself, while its nbdfuse could still be named.
  expect(ops.calls).toContain('attach pvc-1');
  expect(ops.attached.size).toBe(0);
});
