/**
 * NFSv4.1 (RFC 8881) numbers this client uses: operations, statuses, and the constants of the
 * arguments it sends. Statuses carry their RFC names, so an error reads "NFS4ERR_GRACE", not 10013.
 */

export const NFS_PROGRAM = 100003;
export const NFS_VERSION = 4;
export const PROC_NULL = 0;
export const PROC_COMPOUND = 1;

export const Op = {
  CLOSE: 4,
  COMMIT: 5,
  GETATTR: 9,
  GETFH: 10,
  LOCK: 12,
  LOCKT: 13,
  LOCKU: 14,
  LOOKUP: 15,
  OPEN: 18,
  PUTFH: 22,
  PUTROOTFH: 24,
  READ: 25,
  REMOVE: 28,
  WRITE: 38,
  EXCHANGE_ID: 42,
  CREATE_SESSION: 43,
  DESTROY_SESSION: 44,
  DESTROY_CLIENTID: 57,
  SEQUENCE: 53,
  RECLAIM_COMPLETE: 58,
} as const;

export const Status = {
  NFS4_OK: 0,
  NFS4ERR_PERM: 1,
  NFS4ERR_NOENT: 2,
  NFS4ERR_IO: 5,
  NFS4ERR_ACCESS: 13,
  NFS4ERR_EXIST: 17,
  NFS4ERR_NOTDIR: 20,
  NFS4ERR_ISDIR: 21,
  NFS4ERR_INVAL: 22,
  NFS4ERR_FBIG: 27,
  NFS4ERR_NOSPC: 28,
  NFS4ERR_ROFS: 30,
  NFS4ERR_NAMETOOLONG: 63,
  NFS4ERR_NOTEMPTY: 66,
  NFS4ERR_STALE: 70,
  NFS4ERR_BADHANDLE: 10001,
  NFS4ERR_NOTSUPP: 10004,
  NFS4ERR_SERVERFAULT: 10006,
  NFS4ERR_DELAY: 10008,
  NFS4ERR_DENIED: 10010,
  NFS4ERR_EXPIRED: 10011,
  NFS4ERR_LOCKED: 10012,
  NFS4ERR_GRACE: 10013,
  NFS4ERR_SHARE_DENIED: 10015,
  NFS4ERR_CLID_INUSE: 10017,
  NFS4ERR_RESOURCE: 10018,
  NFS4ERR_NOFILEHANDLE: 10020,
  NFS4ERR_MINOR_VERS_MISMATCH: 10021,
  NFS4ERR_STALE_CLIENTID: 10022,
  NFS4ERR_STALE_STATEID: 10023,
  NFS4ERR_OLD_STATEID: 10024,
  NFS4ERR_BAD_STATEID: 10025,
  NFS4ERR_BAD_SEQID: 10026,
  NFS4ERR_NO_GRACE: 10033,
  NFS4ERR_RECLAIM_BAD: 10034,
  NFS4ERR_RECLAIM_CONFLICT: 10035,
  NFS4ERR_BADXDR: 10036,
  NFS4ERR_BADSESSION: 10052,
  NFS4ERR_COMPLETE_ALREADY: 10054,
  NFS4ERR_SEQ_MISORDERED: 10063,
  NFS4ERR_OP_NOT_IN_SESSION: 10071,
  NFS4ERR_DEADSESSION: 10078,
} as const;

export type StatusName = keyof typeof Status;

const statusNames = new Map<number, string>(Object.entries(Status).map(([name, code]) => [code, name]));

export function statusName(code: number): string {
  return statusNames.get(code) ?? `NFS4 status ${code}`;
}

/** An operation the server answered with a status other than NFS4_OK. */
export class Nfs4Error extends Error {
  constructor(
    readonly status: number,
    readonly operation: string,
    detail = '',
  ) {
    super(`${operation} failed: ${statusName(status)}${detail ? ` (${detail})` : ''}`);
    this.name = 'Nfs4Error';
  }

  is(name: StatusName): boolean {
    return this.status === Status[name];
  }
}

export const OPEN4_SHARE_ACCESS_READ = 1;
export const OPEN4_SHARE_ACCESS_WRITE = 2;
export const OPEN4_SHARE_ACCESS_BOTH = 3;
export const OPEN4_SHARE_ACCESS_WANT_NO_DELEG = 0x0400;
export const OPEN4_NOCREATE = 0;
export const OPEN4_CREATE = 1;
export const UNCHECKED4 = 0;
export const CLAIM_NULL = 0;
export const CLAIM_PREVIOUS = 1;
export const CLAIM_FH = 4;
export const OPEN_DELEGATE_NONE = 0;
export const OPEN_DELEGATE_NONE_EXT = 3;
export const WND4_CONTENTION = 1;
export const WND4_RESOURCE = 2;
export const FILE_SYNC4 = 2;
export const UNSTABLE4 = 0;
export const READ_LT = 1;
export const WRITE_LT = 2;
export const FATTR4_SIZE = 4;
export const FATTR4_FSID = 8;
export const FATTR4_MODE = 33;
export const SP4_NONE = 0;
