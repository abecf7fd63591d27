/**
 * A small NFSv4.1 client (RFC 8881): open, read, write, commit, close, byte-range locks and
 * their reclaim after a server restart, remove and size. It exists because nothing on the CI
 * machines speaks NFSv4.1 — no kernel NFS client, and Debian 12's libnfs (4.0.0) speaks only
 * NFSv4.0, which Tandem's share managers refuse. The share manager uses it to check its own
 * export serves before advertising it; the tests move data and take locks with it.
 */
import {
  CLAIM_NULL,
  CLAIM_PREVIOUS,
  FATTR4_FSID,
  FATTR4_MODE,
  FATTR4_SIZE,
  FILE_SYNC4,
  Nfs4Error,
  OPEN_DELEGATE_NONE,
  OPEN_DELEGATE_NONE_EXT,
  OPEN4_CREATE,
  OPEN4_NOCREATE,
  OPEN4_SHARE_ACCESS_BOTH,
  OPEN4_SHARE_ACCESS_READ,
  OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
  READ_LT,
  Status,
  UNCHECKED4,
  UNSTABLE4,
  WND4_CONTENTION,
  WND4_RESOURCE,
  WRITE_LT,
} from './protocol.js';
import { Nfs4Session, type OpCall, type SessionOptions } from './session.js';
import type { XdrReader, XdrWriter } from './xdr.js';

export { Nfs4Error } from './protocol.js';
export { RpcConnectionError } from './rpc.js';

export interface StateId {
  seqid: number;
  other: Buffer;
}

export interface OpenFile {
  path: string;
  fh: Buffer;
  stateid: StateId;
}

export interface LockHandle {
  file: OpenFile;
  stateid: StateId;
  type: 'read' | 'write';
  offset: bigint;
  length: bigint;
}

export interface OpenOptions {
  create?: boolean;
  /** Reclaim an open this client held before the server restarted (only during grace). */
  reclaim?: boolean;
  readOnly?: boolean;
}

export interface LockOptions {
  type?: 'read' | 'write';
  offset?: bigint;
  /** Bytes; all of the file from offset by default. */
  length?: bigint;
  reclaim?: boolean;
}

const WHOLE_FILE = 0xffff_ffff_ffff_ffffn;

function writeStateId(w: XdrWriter, stateid: StateId): void {
  w.uint32(stateid.seqid).fixedOpaque(stateid.other, 12);
}

function readStateId(r: XdrReader): StateId {
  return { seqid: r.uint32(), other: Buffer.from(r.fixedOpaque(12)) };
}

function components(path: string): string[] {
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new Error(`path ${path} must not contain ..`);
  return parts;
}

/** PUTROOTFH and a LOOKUP per component: the current filehandle becomes the path's. */
function walk(parts: string[]): OpCall[] {
  return [
    { name: 'PUTROOTFH' },
    ...parts.map((part): OpCall => ({ name: 'LOOKUP', encode: (w) => w.string(part) })),
  ];
}

const getFh: OpCall<Buffer> = { name: 'GETFH', decode: (r) => Buffer.from(r.opaque(128)) };

/**
 * Retries `attempt` while the server answers NFS4ERR_GRACE (it takes no new state until grace
 * ends), as an NFS client does; any other error, or grace outlasting `limitMs`, is thrown.
 */
export async function retryWhileInGrace<T>(
  attempt: () => Promise<T>,
  limitMs: number,
  pollMs = 250,
): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof Nfs4Error && err.is('NFS4ERR_GRACE')) || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }
}

export class Nfs4Client {
  private lockOwnerCounter = 0;
  private renewTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly session: Nfs4Session,
    private readonly ownerId: string,
  ) {}

  /**
   * Opens a session. NFSv4.1 lets a client take new state only after RECLAIM_COMPLETE, so one
   * that has nothing to reclaim sends it at once; one that means to reclaim (`reclaiming`) sends
   * it itself with reclaimComplete() once its reclaims are done.
   */
  static async connect(options: SessionOptions & { reclaiming?: boolean }): Promise<Nfs4Client> {
    const client = new Nfs4Client(await Nfs4Session.open(options), options.ownerId);
    if (!options.reclaiming) {
      try {
        await client.reclaimComplete();
      } catch (err) {
        client.abandon();
        throw err;
      }
    }
    return client;
  }

  get serverScope(): string {
    return this.session.identity.serverScope;
  }

  get broken(): boolean {
    return this.session.broken;
  }

  /** Tells the server this client has reclaimed everything it will (ends its part of grace). */
  async reclaimComplete(): Promise<void> {
    await this.session.compound([{ name: 'RECLAIM_COMPLETE', encode: (w) => w.bool(false) }]);
  }

  async open(path: string, options: OpenOptions = {}): Promise<OpenFile> {
    const parts = components(path);
    const name = parts.pop();
    if (name === undefined) throw new Error('cannot open the export root as a file');
    const access =
      (options.readOnly ? OPEN4_SHARE_ACCESS_READ : OPEN4_SHARE_ACCESS_BOTH) |
      OPEN4_SHARE_ACCESS_WANT_NO_DELEG;
    const openOp: OpCall<StateId> = {
      name: 'OPEN',
      encode: (w) => {
        w.uint32(0).uint32(access).uint32(0);
        w.uint64(this.session.identity.clientId).string(`open:${this.ownerId}`);
        if (options.create && !options.reclaim) {
          w.uint32(OPEN4_CREATE).uint32(UNCHECKED4);
          // createattrs: mode 0644
          w.uint32Array([0, 1 << (FATTR4_MODE - 32)]);
          w.uint32(4).uint32(0o644);
        } else w.uint32(OPEN4_NOCREATE);
        if (options.reclaim) w.uint32(CLAIM_PREVIOUS).uint32(OPEN_DELEGATE_NONE);
        else w.uint32(CLAIM_NULL).string(name);
      },
      decode: (r) => {
        const stateid = readStateId(r);
        r.bool(); // change_info atomic
        r.uint64();
        r.uint64();
        r.uint32(); // rflags
        r.uint32Array(); // attrset
        const delegation = r.uint32();
        if (delegation === OPEN_DELEGATE_NONE_EXT) {
          const why = r.uint32();
          if (why === WND4_CONTENTION || why === WND4_RESOURCE) r.bool();
        } else if (delegation !== OPEN_DELEGATE_NONE) {
          throw new Nfs4Error(
            Status.NFS4ERR_SERVERFAULT,
            'OPEN',
            `delegation ${delegation} granted though none was wanted`,
          );
        }
        return stateid;
      },
    };
    // A reclaim names the file by its filehandle (CLAIM_PREVIOUS), so walk to the file itself.
    const ops = options.reclaim
      ? [...walk([...parts, name]), openOp, getFh]
      : [...walk(parts), openOp, getFh];
    const results = await this.session.compound(ops);
    const stateid = results[results.length - 2] as StateId;
    const fh = results[results.length - 1] as Buffer;
    return { path, fh, stateid };
  }

  /** WRITE with FILE_SYNC: acknowledged means on the server's stable storage. */
  async write(file: OpenFile, offset: bigint, data: Buffer): Promise<number> {
    const { committed } = await this.sendWrite(file, offset, data, FILE_SYNC4);
    if (committed !== FILE_SYNC4)
      throw new Nfs4Error(
        Status.NFS4ERR_IO,
        'WRITE',
        `asked for FILE_SYNC, server committed level ${committed}`,
      );
    return data.length;
  }

  /**
   * WRITE with UNSTABLE, as kernel clients write ordinary data: the server may hold it in memory
   * until COMMIT. Resolves with the server's write verifier; a COMMIT answering a different one
   * means the server restarted in between and the data must be written again.
   */
  async writeUnstable(file: OpenFile, offset: bigint, data: Buffer): Promise<Buffer> {
    return (await this.sendWrite(file, offset, data, UNSTABLE4)).verifier;
  }

  /** One WRITE at the given stability; a short write is an error (these writes never wrap). */
  private async sendWrite(
    file: OpenFile,
    offset: bigint,
    data: Buffer,
    stable: number,
  ): Promise<{ committed: number; verifier: Buffer }> {
    const [, result] = await this.session.compound([
      { name: 'PUTFH', encode: (w) => w.opaque(file.fh) },
      {
        name: 'WRITE',
        encode: (w) => {
          writeStateId(w, file.stateid);
          w.uint64(offset).uint32(stable).opaque(data);
        },
        decode: (r) => ({
          count: r.uint32(),
          committed: r.uint32(),
          verifier: Buffer.from(r.fixedOpaque(8)),
        }),
      },
    ]);
    const { count, committed, verifier } = result as { count: number; committed: number; verifier: Buffer };
    if (count !== data.length)
      throw new Nfs4Error(Status.NFS4ERR_IO, 'WRITE', `short write: ${count} of ${data.length} bytes`);
    return { committed, verifier };
  }

  /** COMMIT of the whole file: every unstable write before it is on stable storage. */
  async commit(file: OpenFile): Promise<Buffer> {
    const [, verifier] = await this.session.compound([
      { name: 'PUTFH', encode: (w) => w.opaque(file.fh) },
      {
        name: 'COMMIT',
        encode: (w) => w.uint64(0n).uint32(0),
        decode: (r) => Buffer.from(r.fixedOpaque(8)),
      },
    ]);
    return verifier as Buffer;
  }

  async read(file: OpenFile, offset: bigint, count: number): Promise<{ data: Buffer; eof: boolean }> {
    const [, result] = await this.session.compound([
      { name: 'PUTFH', encode: (w) => w.opaque(file.fh) },
      {
        name: 'READ',
        encode: (w) => {
          writeStateId(w, file.stateid);
          w.uint64(offset).uint32(count);
        },
        decode: (r) => {
          const eof = r.bool();
          return { eof, data: Buffer.from(r.opaque(count)) };
        },
      },
    ]);
    return result as { data: Buffer; eof: boolean };
  }

  /** Reads the whole file from offset 0, in chunks of up to 1 MiB. */
  async readAll(file: OpenFile): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let offset = 0n;
    for (;;) {
      const { data, eof } = await this.read(file, offset, 1 << 20);
      chunks.push(data);
      offset += BigInt(data.length);
      if (eof || data.length === 0) return Buffer.concat(chunks);
    }
  }

  async close(file: OpenFile): Promise<void> {
    await this.session.compound([
      { name: 'PUTFH', encode: (w) => w.opaque(file.fh) },
      {
        name: 'CLOSE',
        encode: (w) => {
          w.uint32(0);
          writeStateId(w, file.stateid);
        },
        decode: readStateId,
      },
    ]);
  }

  /** A byte-range lock; a conflicting lock fails with NFS4ERR_DENIED naming its holder's range. */
  async lock(file: OpenFile, options: LockOptions = {}): Promise<LockHandle> {
    const type = options.type ?? 'write';
    const offset = options.offset ?? 0n;
    const length = options.length ?? WHOLE_FILE;
    const owner = `lock:${this.ownerId}:${this.lockOwnerCounter++}`;
    const [, stateid] = await this.session.compound([
      { name: 'PUTFH', encode: (w) => w.opaque(file.fh) },
      {
        name: 'LOCK',
        encode: (w) => {
          w.uint32(type === 'write' ? WRITE_LT : READ_LT)
            .bool(options.reclaim ?? false)
            .uint64(offset)
            .uint64(length)
            .bool(true); // new lock owner, from the open's stateid
          w.uint32(0);
          writeStateId(w, file.stateid);
          w.uint32(0).uint64(this.session.identity.clientId).string(owner);
        },
        decode: readStateId,
        decodeError: (status, r) => {
          if (status !== Status.NFS4ERR_DENIED) return '';
          const heldOffset = r.uint64();
          const heldLength = r.uint64();
          r.uint32();
          r.uint64();
          r.opaque(1024);
          return `held over bytes ${heldOffset}+${heldLength === WHOLE_FILE ? 'end' : heldLength}`;
        },
      },
    ]);
    return { file, stateid: stateid as StateId, type, offset, length };
  }

  async unlock(lock: LockHandle): Promise<void> {
    await this.session.compound([
      { name: 'PUTFH', encode: (w) => w.opaque(lock.file.fh) },
      {
        name: 'LOCKU',
        encode: (w) => {
          w.uint32(lock.type === 'write' ? WRITE_LT : READ_LT).uint32(0);
          writeStateId(w, lock.stateid);
          w.uint64(lock.offset).uint64(lock.length);
        },
        decode: readStateId,
      },
    ]);
  }

  async remove(path: string): Promise<void> {
    const parts = components(path);
    const name = parts.pop();
    if (name === undefined) throw new Error('cannot remove the export root');
    await this.session.compound([...walk(parts), { name: 'REMOVE', encode: (w) => w.string(name) }]);
  }

  async size(path: string): Promise<bigint> {
    const results = await this.session.compound([
      ...walk(components(path)),
      {
        name: 'GETATTR',
        encode: (w) => w.uint32Array([1 << FATTR4_SIZE]),
        decode: (r) => {
          const mask = r.uint32Array();
          const values = r.opaque();
          if (((mask[0] ?? 0) & (1 << FATTR4_SIZE)) === 0 || values.length < 8)
            throw new Nfs4Error(Status.NFS4ERR_SERVERFAULT, 'GETATTR', 'size not returned');
          return values.readBigUInt64BE(0);
        },
      },
    ]);
    return results[results.length - 1] as bigint;
  }

  /** The filesystem id of the export root: tells a served export from Ganesha's pseudo root. */
  async rootFsid(): Promise<string> {
    const [, fsid] = await this.session.compound([
      { name: 'PUTROOTFH' },
      {
        name: 'GETATTR',
        encode: (w) => w.uint32Array([1 << FATTR4_FSID]),
        decode: (r) => {
          const mask = r.uint32Array();
          const values = r.opaque();
          if (((mask[0] ?? 0) & (1 << FATTR4_FSID)) === 0 || values.length < 16)
            throw new Nfs4Error(Status.NFS4ERR_SERVERFAULT, 'GETATTR', 'fsid not returned');
          return `${values.readBigUInt64BE(0)}.${values.readBigUInt64BE(8)}`;
        },
      },
    ]);
    return fsid as string;
  }

  /** Renews the lease (a SEQUENCE) every intervalMs while the client lives, as NFSv4.1 requires. */
  keepAlive(intervalMs: number): void {
    this.stopKeepAlive();
    this.renewTimer = setInterval(() => {
      if (!this.session.broken) this.session.compound([]).catch(() => undefined);
    }, intervalMs);
    this.renewTimer.unref();
  }

  /** Ends the session cleanly: the server releases this client's opens and locks. */
  async destroy(): Promise<void> {
    this.stopKeepAlive();
    await this.session.destroy();
  }

  /** Drops the connection without a word, as a crashed client would: its state stays until lease expiry. */
  abandon(): void {
    this.stopKeepAlive();
    this.session.abandon();
  }

  private stopKeepAlive(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
  }
}
