/**
 * An NFSv4.1 session: EXCHANGE_ID and CREATE_SESSION on connect, then every COMPOUND starts with
 * SEQUENCE on a free slot of the fore channel. The slot table is what makes NFSv4.1 replies
 * exactly-once; a reply that never came leaves its slot's sequence unknown, so the session is
 * then marked broken and the owner must reconnect (and, after a server restart, reclaim).
 */
import {
  NFS_PROGRAM,
  NFS_VERSION,
  Nfs4Error,
  Op,
  PROC_COMPOUND,
  PROC_NULL,
  SP4_NONE,
  Status,
} from './protocol.js';
import { type AuthSys, RpcConnection, RpcConnectionError, type RpcEndpoint } from './rpc.js';
import { type XdrReader, XdrWriter } from './xdr.js';

export interface OpCall<T = unknown> {
  name: keyof typeof Op;
  encode?: (w: XdrWriter) => void;
  decode?: (r: XdrReader) => T;
  /** Decodes the body an error status carries (LOCK's NFS4ERR_DENIED) into the error's detail. */
  decodeError?: (status: number, r: XdrReader) => string;
}

export interface SessionOptions {
  endpoint: RpcEndpoint;
  /** The client's identity. The same owner after a server restart is what lets it reclaim. */
  ownerId: string;
  /** The client incarnation; keep it to reclaim, change it to tell the server state was lost. */
  verifier?: Buffer;
  auth?: AuthSys;
  timeoutMs?: number;
  slots?: number;
}

export interface ServerIdentity {
  clientId: bigint;
  serverScope: string;
  serverOwner: string;
}

const opNames = new Map<number, string>(Object.entries(Op).map(([name, code]) => [code, name]));

/** Encodes channel_attrs4 for the fore or back channel. */
function channelAttrs(w: XdrWriter, maxRequests: number): void {
  w.uint32(0) // headerpadsize
    .uint32(1_049_620) // maxrequestsize: a 1 MiB WRITE plus its headers
    .uint32(1_049_620) // maxresponsesize: a 1 MiB READ plus its headers
    .uint32(8_192) // maxresponsesize_cached
    .uint32(16) // maxoperations
    .uint32(maxRequests)
    .uint32Array([]); // rdma_ird
}

function readChannelAttrs(r: XdrReader): { maxRequests: number } {
  r.uint32();
  r.uint32();
  r.uint32();
  r.uint32();
  r.uint32();
  const maxRequests = r.uint32();
  r.uint32Array(1);
  return { maxRequests };
}

export class Nfs4Session {
  private sessionId: Buffer = Buffer.alloc(16);
  private slotSequence: number[] = [];
  private freeSlots: number[] = [];
  private slotWaiters: Array<(slot: number) => void> = [];
  private brokenWith: Error | undefined;
  readonly timeoutMs: number;

  private constructor(
    private readonly connection: RpcConnection,
    readonly identity: ServerIdentity,
    timeoutMs: number,
  ) {
    this.timeoutMs = timeoutMs;
  }

  /** NULL procedure: the server answers RPC on this port (no NFS state is touched). */
  static async ping(endpoint: RpcEndpoint, timeoutMs = 3_000): Promise<void> {
    const connection = await RpcConnection.connect(endpoint, defaultAuth(), timeoutMs);
    try {
      await connection.call(NFS_PROGRAM, NFS_VERSION, PROC_NULL, Buffer.alloc(0), timeoutMs);
    } finally {
      connection.close();
    }
  }

  /** Whether an NFS server answers at `endpoint` now (a NULL call within `timeoutMs`). */
  static async answers(endpoint: RpcEndpoint, timeoutMs: number): Promise<boolean> {
    try {
      await Nfs4Session.ping(endpoint, timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  static async open(options: SessionOptions): Promise<Nfs4Session> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const connection = await RpcConnection.connect(
      options.endpoint,
      options.auth ?? defaultAuth(),
      timeoutMs,
    );
    try {
      const verifier = options.verifier ?? Buffer.alloc(8);
      const exchange = await rawCompound(connection, timeoutMs, [
        {
          name: 'EXCHANGE_ID',
          encode: (w) =>
            w
              .fixedOpaque(verifier, 8)
              .string(options.ownerId)
              .uint32(0) // flags: the server chooses the roles
              .uint32(SP4_NONE)
              .uint32(0), // no implementation id
          decode: (r) => {
            const clientId = r.uint64();
            const sequence = r.uint32();
            r.uint32(); // flags
            if (r.uint32() !== SP4_NONE)
              throw new Error('the server asked for state protection this client does not do');
            r.uint64(); // server owner minor id
            const serverOwner = r.opaque(1024).toString('utf8');
            const serverScope = r.opaque(1024).toString('utf8').replace(/\0+$/, '');
            return { clientId, sequence, serverOwner, serverScope };
          },
        },
      ]);
      const { clientId, sequence, serverOwner, serverScope } = exchange[0] as {
        clientId: bigint;
        sequence: number;
        serverOwner: string;
        serverScope: string;
      };
      const slots = options.slots ?? 8;
      const created = await rawCompound(connection, timeoutMs, [
        {
          name: 'CREATE_SESSION',
          encode: (w) => {
            w.uint64(clientId).uint32(sequence).uint32(0);
            channelAttrs(w, slots);
            channelAttrs(w, 1);
            w.uint32(0x4000_0000); // callback program: no back channel is bound, delegations are off
            w.uint32(1).uint32(0); // one callback security flavor: AUTH_NONE
          },
          decode: (r) => {
            const sessionId = r.fixedOpaque(16);
            r.uint32(); // sequence
            r.uint32(); // flags
            const fore = readChannelAttrs(r);
            readChannelAttrs(r);
            return { sessionId: Buffer.from(sessionId), maxRequests: fore.maxRequests };
          },
        },
      ]);
      const { sessionId, maxRequests } = created[0] as { sessionId: Buffer; maxRequests: number };
      const session = new Nfs4Session(connection, { clientId, serverScope, serverOwner }, timeoutMs);
      session.sessionId = sessionId;
      const granted = Math.max(1, Math.min(slots, maxRequests));
      session.slotSequence = Array.from({ length: granted }, () => 0);
      session.freeSlots = Array.from({ length: granted }, (_, slot) => slot);
      return session;
    } catch (err) {
      connection.close();
      throw err;
    }
  }

  get broken(): boolean {
    return this.brokenWith !== undefined || this.connection.closed;
  }

  /** Runs SEQUENCE plus the given operations; resolves with each operation's decoded result. */
  async compound(ops: OpCall[]): Promise<unknown[]> {
    if (this.brokenWith) throw this.brokenWith;
    const slot = await this.takeSlot();
    const sequence = ((this.slotSequence[slot] as number) + 1) >>> 0;
    const highest = this.slotSequence.length - 1;
    const sequenceOp: OpCall = {
      name: 'SEQUENCE',
      encode: (w) =>
        w.fixedOpaque(this.sessionId, 16).uint32(sequence).uint32(slot).uint32(highest).bool(false),
      decode: (r) => {
        r.fixedOpaque(16);
        r.uint32();
        r.uint32();
        r.uint32();
        r.uint32();
        return r.uint32(); // status flags
      },
    };
    try {
      const results = await rawCompound(this.connection, this.timeoutMs, [sequenceOp, ...ops], () => {
        // SEQUENCE succeeded: the slot's sequence advanced even if a later operation failed.
        this.slotSequence[slot] = sequence;
      });
      return results.slice(1);
    } catch (err) {
      if (err instanceof RpcConnectionError) this.brokenWith = err;
      if (err instanceof Nfs4Error && err.operation === 'SEQUENCE' && sessionGone(err.status))
        this.brokenWith = err;
      throw err;
    } finally {
      this.releaseSlot(slot);
    }
  }

  /** DESTROY_SESSION and DESTROY_CLIENTID: the server forgets this client and its locks. */
  async destroy(): Promise<void> {
    try {
      if (!this.broken) {
        await rawCompound(this.connection, this.timeoutMs, [
          { name: 'DESTROY_SESSION', encode: (w) => w.fixedOpaque(this.sessionId, 16) },
        ]);
        await rawCompound(this.connection, this.timeoutMs, [
          { name: 'DESTROY_CLIENTID', encode: (w) => w.uint64(this.identity.clientId) },
        ]);
      }
    } finally {
      this.connection.close();
    }
  }

  /** Drops the connection without telling the server, as a crashed client would. */
  abandon(): void {
    this.brokenWith = new RpcConnectionError('the session was abandoned');
    this.connection.close();
  }

  private takeSlot(): Promise<number> {
    const slot = this.freeSlots.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  private releaseSlot(slot: number): void {
    const waiter = this.slotWaiters.shift();
    if (waiter) waiter(slot);
    else this.freeSlots.push(slot);
  }
}

function sessionGone(status: number): boolean {
  return (
    status === Status.NFS4ERR_BADSESSION ||
    status === Status.NFS4ERR_DEADSESSION ||
    status === Status.NFS4ERR_STALE_CLIENTID ||
    status === Status.NFS4ERR_SEQ_MISORDERED
  );
}

function defaultAuth(): AuthSys {
  return { machineName: 'tandem', uid: 0, gid: 0 };
}

/** One COMPOUND with minor version 1; throws Nfs4Error at the first operation that failed. */
async function rawCompound(
  connection: RpcConnection,
  timeoutMs: number,
  ops: OpCall[],
  onFirstOk?: () => void,
): Promise<unknown[]> {
  const w = new XdrWriter().string('').uint32(1).uint32(ops.length);
  for (const op of ops) {
    w.uint32(Op[op.name]);
    op.encode?.(w);
  }
  const r = await connection.call(NFS_PROGRAM, NFS_VERSION, PROC_COMPOUND, w.toBuffer(), timeoutMs);
  const compoundStatus = r.uint32();
  r.opaque(1024); // tag
  const count = r.uint32();
  const results: unknown[] = [];
  for (let index = 0; index < count; index++) {
    const op = ops[index];
    const opcode = r.uint32();
    const status = r.uint32();
    if (op === undefined || opcode !== Op[op.name])
      throw new Nfs4Error(
        Status.NFS4ERR_SERVERFAULT,
        op?.name ?? 'COMPOUND',
        `reply for ${opNames.get(opcode) ?? opcode}`,
      );
    if (status !== Status.NFS4_OK) throw new Nfs4Error(status, op.name, op.decodeError?.(status, r) ?? '');
    results.push(op.decode ? op.decode(r) : undefined);
    if (index === 0) onFirstOk?.();
  }
  if (compoundStatus !== Status.NFS4_OK) throw new Nfs4Error(compoundStatus, ops[count]?.name ?? 'COMPOUND');
  return results;
}
