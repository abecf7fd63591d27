/**
 * What share managers of *other* volumes left on this node when they were killed.
 *
 * A share manager's FUSE, loop and filesystem mounts live in the node's mount namespace too (its
 * Pod mounts the state folder Bidirectional, see driver/controller/share-manager-objects.ts), so a
 * SIGKILLed share manager leaves them behind: a filesystem on a loop device over a FUSE file whose
 * nbdfuse is dead. Its successor may start on another node and never clean them up. Every share
 * manager that starts on a node therefore releases the attachments of other volumes whose nbdfuse
 * connection is gone — unambiguous, since no share manager can serve through a dead connection.
 * Attachments that answer belong to running share managers and are never touched.
 */
import { readdir } from 'node:fs/promises';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';

export interface DeadShareSweep {
  stateDir: string;
  /** The volume of the share manager sweeping: its own attachment is released by its own start. */
  ownVolumeId: string;
  /** Why the volume's attachment on this node can carry no I/O, or undefined when it can (or is none). */
  attachmentProblem(volumeId: string): Promise<string | undefined>;
  release(volumeId: string): Promise<void>;
  logger: Logger;
}

/** Releases the dead attachments of other volumes; the volumes released. Failures are logged, not thrown. */
export async function releaseDeadShares(sweep: DeadShareSweep): Promise<string[]> {
  const entries = await readdir(sweep.stateDir, { withFileTypes: true }).catch(() => []);
  const released: string[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || entry.name === sweep.ownVolumeId) continue;
    const volumeId = entry.name;
    try {
      const problem = await sweep.attachmentProblem(volumeId);
      if (problem === undefined) continue;
      sweep.logger.warn({ volumeId, problem }, 'releasing what a dead share manager left on this node');
      await sweep.release(volumeId);
      released.push(volumeId);
    } catch (err) {
      // Best effort: the next share manager starting here tries again, and so does the volume's own.
      sweep.logger.warn(
        { volumeId, err: errorMessage(err) },
        'could not release the mounts of a dead share manager',
      );
    }
  }
  return released;
}
