/**
 * Fencing the losing engine of a migration at the replicas themselves. The record's epoch moved
 * past the one both engines used; this pushes the new epoch to every replica still written to,
 * with an authenticated HELLO (the volume's credential), so each replica persists it and refuses
 * every later frame stamped with the old one — a source QEMU that was never paused, or an engine
 * on a partitioned node, can no longer write anything. The winning engine learns the epoch on its
 * next request (STALE_EPOCH), reads the record, finds itself a member and carries on.
 */
import type { Logger } from 'pino';
import { ReplicaClient, ReplicaError } from '../driver/replica/client.js';
import type { ReplicaStatus } from '../lib/api/volume.js';
import { errorMessage } from '../lib/errors.js';

export interface FenceResult {
  /** Replicas that now hold the fence epoch (or a newer one). */
  fenced: string[];
  /** Replicas that could not be reached; the caller marks them Failed in a newer epoch. */
  unreachable: { node: string; error: string }[];
}

export interface Fencer {
  fence(volume: string, epoch: number, replicas: ReplicaStatus[]): Promise<FenceResult>;
}

export interface ReplicaFencerOptions {
  /** The volume's data-plane credential (undefined: no Secret, so nothing can be fenced yet). */
  credential: (volume: string) => Promise<Buffer | undefined>;
  /** Identity presented to replicas in HELLO (logged by them); unique per migrator process. */
  identity: string;
  timeoutMs?: number;
  attempts?: number;
  log: Logger;
}

export class ReplicaFencer implements Fencer {
  constructor(private readonly options: ReplicaFencerOptions) {}

  async fence(volume: string, epoch: number, replicas: ReplicaStatus[]): Promise<FenceResult> {
    const secret = await this.options.credential(volume);
    if (secret === undefined) throw new Error(`volume ${volume} has no data-plane credential Secret`);
    const targets = replicas.filter((r) => r.mode !== 'Failed' && r.address);
    const results = await Promise.all(targets.map((r) => this.#fenceOne(volume, epoch, r, secret)));
    const out: FenceResult = { fenced: [], unreachable: [] };
    results.forEach((error, i) => {
      const node = targets[i]?.node as string;
      if (error === undefined) out.fenced.push(node);
      else out.unreachable.push({ node, error });
    });
    return out;
  }

  async #fenceOne(
    volume: string,
    epoch: number,
    replica: ReplicaStatus,
    secret: Buffer,
  ): Promise<string | undefined> {
    const attempts = this.options.attempts ?? 3;
    const timeoutMs = this.options.timeoutMs ?? 2000;
    let last = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const client = await ReplicaClient.connect({
          address: replica.address as string,
          volume,
          engineId: this.options.identity,
          secret,
          epoch: BigInt(epoch),
          requestTimeoutMs: timeoutMs,
          connectTimeoutMs: timeoutMs,
          log: this.options.log,
        });
        client.close();
        return undefined;
      } catch (err) {
        // A replica already at a newer epoch refuses ours: it is fenced against the old one too.
        if (err instanceof ReplicaError && err.status === 'STALE_EPOCH') return undefined;
        last = errorMessage(err);
        this.options.log.warn({ volume, node: replica.node, attempt, err: last }, 'fencing a replica failed');
      }
    }
    return last;
  }
}
