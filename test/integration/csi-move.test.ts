/**
 * A volume moves between nodes the way a pod rescheduled elsewhere moves it: used on node 1
 * (published, staged, files written), released there (unpublish, unstage, ControllerUnpublish),
 * then published, staged and mounted on node 2, where the files read back intact — through an
 * engine on node 2 this time, which reaches node 1's replica over the network.
 */
import { join } from 'node:path';
import { retrying } from '../harness/csi-client.js';
import { CsiStack, type StackNode } from '../harness/csi-stack.js';
import { CsiVolumeSteps, writeRandomFile } from '../harness/csi-volume-steps.js';
import { sha256 } from '../harness/host-inspection.js';

const MiB = 1024 * 1024;

describe('a volume moves from one node to another with its data', () => {
  let stack: CsiStack;
  let steps: CsiVolumeSteps;

  beforeAll(async () => {
    stack = await CsiStack.start(2);
    steps = new CsiVolumeSteps(stack, 64 * MiB);
  }, 90_000);

  afterAll(async () => {
    await steps?.releaseAll();
    await stack?.destroy();
  }, 120_000);

  const use = async (id: string, n: StackNode) => {
    await steps.publish(id, n);
    await steps.stage(id, n);
    await steps.nodePublish(id, n);
  };

  const release = async (id: string, n: StackNode) => {
    await steps.nodeUnpublish(id, n);
    await steps.nodeUnstage(id, n);
    await retrying(() =>
      steps.controller.call('Controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: n.name }),
    );
  };

  test('files written on node 1 read back on node 2; engines follow the volume', async () => {
    const id = await steps.createVolume('move-fs');
    const [first, second] = [steps.node(0), steps.node(1)];

    await use(id, first);
    const files = ['a.bin', 'b.bin'];
    const sums = new Map<string, string>();
    for (const name of files) {
      const file = join(steps.targetPath(id, first), name);
      await writeRandomFile(file, 3);
      sums.set(name, await sha256(file));
    }
    await release(id, first);
    const between = await steps.getVolume(id);
    expect(between?.spec.engines).toEqual([]);
    expect(between?.status?.engines ?? []).toEqual([]);

    await use(id, second);
    const moved = await steps.getVolume(id);
    expect(moved?.spec.engines).toEqual([{ node: second.name }]);
    expect(moved?.status?.engines?.map((e) => e.node)).toEqual([second.name]);
    // Both replicas stayed in the set: nothing was lost to the move.
    expect(moved?.status?.replicas?.map((r) => r.mode)).toEqual(['ReadWrite', 'ReadWrite']);
    for (const name of files)
      expect(await sha256(join(steps.targetPath(id, second), name))).toBe(sums.get(name));
    // And it keeps taking writes there.
    await writeRandomFile(join(steps.targetPath(id, second), 'c.bin'), 1);

    expect(await steps.teardown(id, second)).toEqual([]);
  }, 180_000);
});
