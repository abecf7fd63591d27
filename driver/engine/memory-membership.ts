/**
 * An in-memory MembershipStore for unit tests of the engine. It behaves like the Kubernetes
 * store where an engine can tell the difference: reads hand out copies, updates run the change on
 * a fresh copy, are checked by the same rules and lose to a concurrent writer (the change then
 * runs again on the newer record). Test hooks make it fail, slow, or change under the engine.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type Membership,
  type MembershipChange,
  MembershipError,
  type MembershipStore,
} from './membership.js';
import {
  checkChange,
  checkRecord,
  conflictBackoffMs,
  copyMembership,
  MAX_UPDATE_ATTEMPTS,
  sameMembership,
} from './membership-rules.js';

export class MemoryMembershipStore implements MembershipStore {
  /** Calls to read(), and the reads update() does before running a change. */
  reads = 0;
  /** Writes that stored a changed record (not set(), not no-op changes, not lost conflicts). */
  updates = 0;
  /** Writes lost to a concurrent writer and retried. */
  conflicts = 0;

  private record: Membership;
  /** Stands in for the resourceVersion: bumped by every stored change. */
  private version = 0;
  private failures: { remaining: number; error: Error } = { remaining: 0, error: new Error() };
  private delayMs = 0;

  constructor(
    initial: Membership,
    private readonly volumeName = 'memory-volume',
  ) {
    checkRecord(volumeName, initial);
    this.record = copyMembership(initial);
  }

  async read(): Promise<Membership> {
    this.reads++;
    return copyMembership(this.record);
  }

  async update(change: MembershipChange): Promise<Membership> {
    if (this.failures.remaining > 0) {
      this.failures.remaining--;
      throw this.failures.error;
    }
    for (let attempt = 1; ; attempt++) {
      // The read's round trip: a writer that just stored a change does not get to read first.
      if (this.delayMs > 0) await sleep(this.delayMs);
      this.reads++;
      const version = this.version;
      const stored = copyMembership(this.record);
      const next = change(copyMembership(this.record));
      if (next === undefined) return stored;
      checkChange(this.volumeName, stored, next);
      if (sameMembership(next, stored)) return stored;
      // The write's round trip: other updaters and set() can get in before it lands.
      if (this.delayMs > 0) await sleep(this.delayMs);
      if (this.version === version) {
        this.record = copyMembership(next);
        this.version++;
        this.updates++;
        return copyMembership(this.record);
      }
      this.conflicts++;
      if (attempt >= MAX_UPDATE_ATTEMPTS)
        throw new MembershipError(
          `volume ${this.volumeName}: gave up after ${attempt} updates lost to concurrent writers`,
        );
      await sleep(conflictBackoffMs(attempt));
    }
  }

  /** The next `count` calls to update() reject with `error` without touching the record. */
  failNextUpdates(count: number, error: Error = new MembershipError('simulated membership failure')): void {
    this.failures = { remaining: count, error };
  }

  /** Every later update() waits `ms` before reading the record and again before writing it back. */
  delayUpdates(ms: number): void {
    this.delayMs = ms;
  }

  /** Another writer replaces the record (any epoch): in-flight updates lose and run again. */
  set(record: Membership): void {
    checkRecord(this.volumeName, record);
    this.record = copyMembership(record);
    this.version++;
  }
}
