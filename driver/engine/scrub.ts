/**
 * Scrub from outside an engine (`tandem scrub`): connects to every readable replica at the
 * record's epoch (taking no part in the membership) and compares range hashes. Writes may be in
 * flight through a live engine, so a block seen to differ is hashed again a few times before it is
 * reported; the engine's own scrub (POST /scrub on its admin port) holds the range lock instead.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ReplicaClient } from '../replica/client.js';
import { type CompareReport, compareReplicas, DEFAULT_HASH_BLOCK } from './compare.js';
import type { Membership } from './membership.js';
import type { Target } from './replica-set.js';

const RECHECKS = 3;
const RECHECK_DELAY_MS = 200;

export interface ScrubReport extends CompareReport {
  epoch: number;
  replicas: string[];
  unreachable: { node: string; error: string }[];
}

export async function scrubReplicas(options: {
  volume: string;
  secret: Buffer;
  record: Membership;
  log: Logger;
  requestTimeoutMs?: number;
}): Promise<ScrubReport> {
  const { record } = options;
  const targets: Target[] = [];
  const unreachable: { node: string; error: string }[] = [];
  await Promise.all(
    record.replicas
      .filter((m) => m.mode === 'ReadWrite')
      .map(async (member) => {
        try {
          const link = await ReplicaClient.connect({
            address: member.address,
            volume: options.volume,
            engineId: `scrub/${process.pid}`,
            secret: options.secret,
            epoch: BigInt(record.epoch),
            requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
            log: options.log,
          });
          targets.push({ member, link });
        } catch (err) {
          unreachable.push({ node: member.node, error: (err as Error).message });
        }
      }),
  );
  targets.sort((a, b) => record.replicas.indexOf(a.member) - record.replicas.indexOf(b.member));
  try {
    // During an expansion the spec is ahead of replicas not grown yet: compare what all of them hold.
    const sizeBytes = Math.min(record.sizeBytes, ...targets.map((t) => t.link.size));
    const report = await compareReplicas(targets, { sizeBytes });
    const confirmed = [];
    for (const d of report.divergent) {
      let still = true;
      for (let i = 0; i < RECHECKS && still; i++) {
        await sleep(RECHECK_DELAY_MS);
        const hashes = await Promise.all(
          targets.map((t) => t.link.hash(d.offset, d.length, DEFAULT_HASH_BLOCK)),
        );
        const first = hashes[0]?.[0];
        still = hashes.some((h) => first === undefined || !h[0]?.equals(first));
      }
      if (still) confirmed.push(d);
    }
    return {
      ...report,
      divergent: confirmed,
      epoch: record.epoch,
      replicas: targets.map((t) => t.member.node),
      unreachable,
    };
  } finally {
    for (const t of targets) t.link.close();
  }
}
