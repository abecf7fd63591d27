import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../lib/log.js';
import { releaseDeadShares } from './sweep.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sweep-'));
  for (const volume of ['pvc-own', 'pvc-dead', 'pvc-alive', 'pvc-stuck']) await mkdir(join(dir, volume));
  await writeFile(join(dir, 'not-a-volume'), '');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("releases other volumes' dead attachments only: never its own, never a live one; a failed release does not stop the rest", async () => {
  const released: string[] = [];
  const asked: string[] = [];
  const result = await releaseDeadShares({
    stateDir: dir,
    ownVolumeId: 'pvc-own',
    attachmentProblem: async (volumeId) => {
      asked.push(volumeId);
      return volumeId === 'pvc-alive' ? undefined : `the nbdfuse connection of ${volumeId} is gone`;
    },
    release: async (volumeId) => {
      if (volumeId === 'pvc-stuck') throw new Error('umount: target is busy');
      released.push(volumeId);
    },
    logger: silentLogger(),
  });
  expect(asked.sort()).toEqual(['pvc-alive', 'pvc-dead', 'pvc-stuck']);
  expect(released).toEqual(['pvc-dead']);
  expect(result).toEqual(['pvc-dead']);
});

test('a state folder that does not exist yet: nothing to do', async () => {
  const result = await releaseDeadShares({
    stateDir: join(dir, 'missing'),
    ownVolumeId: 'pvc-own',
    attachmentProblem: async () => 'dead',
    release: async () => undefined,
    logger: silentLogger(),
  });
  expect(result).toEqual([]);
});
