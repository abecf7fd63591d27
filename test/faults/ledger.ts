/**
 * A verified block workload for the fault campaign, in the manner of a Jepsen register checker:
 * it writes self-describing 4 KiB blocks (block index and sequence number in a header, the rest
 * derived from both) through a real NBD connection, keeps its own ledger of which write each
 * block last had acknowledged, and reads everything back at the end.
 *
 * Writes to one block never overlap (a block with a write in flight is not chosen again), so the
 * order of a block's writes is the order the ledger saw them. A write whose reply never came (the
 * connection died, the engine was killed) is *indeterminate*: the block may hold it or the one
 * before, and a later acknowledged write to the block supersedes both. The check at the end:
 * every block holds its last acknowledged write or an indeterminate one issued after it; a block
 * that holds an older write, or zeros, lost an acknowledged write; one that holds nothing this
 * ledger wrote is corrupt.
 *
 * The workload follows the volume's engine: `target()` names the NBD socket to use now, and after
 * a connection fails the ledger reconnects there (an engine restarted elsewhere, the target of a
 * migration), retrying until it is stopped.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { NBD_CMD } from '../../driver/nbd/constants.js';
import { NbdTestClient } from '../harness/nbd-test-client.js';

export const BLOCK = 4096;
const MAGIC = Buffer.from('TDMLEDGR');
const REPLY_TIMEOUT_MS = 30_000;

/** The content of `index`'s write number `seq` (deterministic, different for every pair). */
export function blockContent(index: number, seq: number): Buffer {
  const b = Buffer.allocUnsafe(BLOCK);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(index, 8);
  b.writeUInt32LE(seq, 12);
  let x = (Math.imul(index, 0x9e3779b1) ^ Math.imul(seq, 0x85ebca6b)) >>> 0;
  for (let off = 16; off < BLOCK; off += 4) {
    // xorshift32: cheap, and it differs from block to block and write to write.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, off);
  }
  return b;
}

export interface LedgerCheck {
  blocks: number;
  /** Blocks that held an older write than the last acknowledged one (or zeros). */
  lost: number;
  /** Blocks whose content this ledger never wrote there. */
  corrupt: number;
  /** First few problems, for the report. */
  examples: string[];
}

export interface LedgerStats {
  acknowledged: number;
  indeterminate: number;
  reconnects: number;
  /** Longest time from a failed request to the next acknowledged write, in ms. */
  longestPauseMs: number;
}

export class Ledger {
  readonly #blocks: number;
  readonly #depth: number;
  readonly #target: () => string;
  readonly #exportName: string;
  readonly #random: () => number;
  /** Per block: the last acknowledged sequence number (0: none). */
  readonly #acked: Uint32Array;
  /** Per block: indeterminate writes issued after the acknowledged one. */
  readonly #maybe = new Map<number, number[]>();
  readonly #busy = new Set<number>();
  /** Sequence numbers that were WRITE_ZEROES (the block reads as zeros after them). */
  readonly #zeroes = new Set<number>();
  #seq = 0;
  #running = false;
  #loops: Promise<void>[] = [];
  #client: NbdTestClient | undefined;
  #connecting: Promise<NbdTestClient> | undefined;
  #failedAt: number | undefined;
  readonly stats: LedgerStats = { acknowledged: 0, indeterminate: 0, reconnects: 0, longestPauseMs: 0 };

  constructor(options: {
    blocks: number;
    depth: number;
    target: () => string;
    exportName: string;
    random: () => number;
  }) {
    this.#blocks = options.blocks;
    this.#depth = options.depth;
    this.#target = options.target;
    this.#exportName = options.exportName;
    this.#random = options.random;
    this.#acked = new Uint32Array(options.blocks);
  }

  start(): void {
    this.#running = true;
    this.#loops = Array.from({ length: this.#depth }, () => this.#loop());
  }

  /** Stops issuing writes and waits for the ones in flight to end one way or the other. */
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    this.#client?.close();
    this.#client = undefined;
  }

  async #connection(): Promise<NbdTestClient> {
    if (this.#client !== undefined && !this.#client.socket.destroyed) return this.#client;
    this.#connecting ??= (async () => {
      for (;;) {
        try {
          const client = await NbdTestClient.connect(this.#target(), this.#exportName);
          this.#client = client;
          return client;
        } catch (err) {
          if (!this.#running) throw err;
          await sleep(100);
        }
      }
    })().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  #pick(): number {
    for (;;) {
      const index = Math.floor(this.#random() * this.#blocks);
      if (!this.#busy.has(index)) return index;
    }
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      let client: NbdTestClient;
      try {
        client = await this.#connection();
      } catch {
        return;
      }
      const index = this.#pick();
      const seq = ++this.#seq;
      this.#busy.add(index);
      let acknowledged = false;
      try {
        // A reply that never comes (a hung engine) is a failure too; the engine's own request
        // timeout is seconds, so this only fires when something is really stuck.
        let timer: NodeJS.Timeout | undefined;
        // One operation in ten zeroes the block instead (the replica punches a hole), so later
        // writes allocate again: that is what a full disk refuses.
        const zero = this.#random() < 0.1;
        if (zero) this.#zeroes.add(seq);
        const request = zero
          ? client.request({ command: NBD_CMD.WRITE_ZEROES, offset: index * BLOCK, length: BLOCK })
          : client.request({
              command: NBD_CMD.WRITE,
              offset: index * BLOCK,
              payload: blockContent(index, seq),
            });
        const reply = await Promise.race([
          request,
          new Promise<undefined>((resolve) => {
            timer = setTimeout(resolve, REPLY_TIMEOUT_MS, undefined);
          }),
        ]).finally(() => clearTimeout(timer));
        acknowledged = reply?.errno === 0;
      } catch {
        acknowledged = false;
      }
      this.#busy.delete(index);
      if (acknowledged) {
        this.#acked[index] = seq;
        this.#maybe.delete(index);
        this.stats.acknowledged++;
        if (this.#failedAt !== undefined) {
          this.stats.longestPauseMs = Math.max(this.stats.longestPauseMs, Date.now() - this.#failedAt);
          this.#failedAt = undefined;
        }
      } else {
        // An error reply or a dead connection: the write may or may not have landed.
        this.#maybe.set(index, [...(this.#maybe.get(index) ?? []), seq]);
        this.stats.indeterminate++;
        this.#failedAt ??= Date.now();
        if (this.#client === client) {
          client.close();
          this.#client = undefined;
          this.stats.reconnects++;
        }
        await sleep(50);
      }
    }
  }

  /** Reads every block back through `socket` and checks it against the ledger. */
  async check(socket: string): Promise<LedgerCheck> {
    const client = await NbdTestClient.connect(socket, this.#exportName);
    const result: LedgerCheck = { blocks: 0, lost: 0, corrupt: 0, examples: [] };
    const note = (text: string) => {
      if (result.examples.length < 5) result.examples.push(text);
    };
    try {
      const chunk = 256; // blocks per read (1 MiB)
      for (let start = 0; start < this.#blocks; start += chunk) {
        const count = Math.min(chunk, this.#blocks - start);
        const reply = await client.request({
          command: NBD_CMD.READ,
          offset: start * BLOCK,
          length: count * BLOCK,
        });
        if (reply.errno !== 0 || reply.data === undefined)
          throw new Error(`read at block ${start}: errno ${reply.errno}`);
        for (let i = 0; i < count; i++) {
          const index = start + i;
          const acked = this.#acked[index] ?? 0;
          const maybe = this.#maybe.get(index) ?? [];
          if (acked === 0 && maybe.length === 0) continue;
          result.blocks++;
          const got = reply.data.subarray(i * BLOCK, (i + 1) * BLOCK);
          const problem = classify(got, index, acked, maybe, (seq) => this.#zeroes.has(seq));
          if (problem === 'lost') result.lost++;
          if (problem === 'corrupt') result.corrupt++;
          if (problem !== undefined)
            note(`block ${index}: ${problem} (acknowledged seq ${acked}, holds ${describe(got)})`);
        }
      }
    } finally {
      client.close();
    }
    return result;
  }
}

function describe(b: Buffer): string {
  if (!b.subarray(0, 8).equals(MAGIC)) return b.every((x) => x === 0) ? 'zeros' : 'foreign data';
  return `block ${b.readUInt32LE(8)} seq ${b.readUInt32LE(12)}`;
}

/**
 * undefined when `got` is a write the ledger allows there; otherwise what is wrong. `isZero`
 * says which sequence numbers were WRITE_ZEROES.
 */
export function classify(
  got: Buffer,
  index: number,
  acked: number,
  maybe: readonly number[],
  isZero: (seq: number) => boolean = () => false,
): 'lost' | 'corrupt' | undefined {
  const allowed = acked === 0 ? maybe : [acked, ...maybe];
  if (!got.subarray(0, 8).equals(MAGIC)) {
    if (!got.every((x) => x === 0)) return 'corrupt';
    // Zeros: a zeroing write the ledger allows, or an indeterminate first write that did not land.
    return acked === 0 || allowed.some(isZero) ? undefined : 'lost';
  }
  const seq = got.readUInt32LE(12);
  if (got.readUInt32LE(8) !== index || !got.equals(blockContent(index, seq))) return 'corrupt';
  if (allowed.includes(seq)) return undefined;
  return seq < acked ? 'lost' : 'corrupt';
}
