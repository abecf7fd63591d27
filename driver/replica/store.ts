import { timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import {
  closeFd,
  fdatasync,
  fstat,
  fsync,
  ftruncate,
  InlineWrites,
  openFd,
  readAt,
  withDirLock,
  writeAt,
} from './file-io.js';
import { defaultFsUtil, type Extent, type FsUtil } from './fsutil.js';
import {
  checkSecret,
  checkVolumeName,
  codedError,
  isVolumeName,
  META_FILE,
  type ReplicaMetadata,
  readMetadata,
  readSecret,
  removeTempFiles,
  syncDir,
  validateMetadata,
  writeMetadataAtomically,
  writeSecret,
} from './metadata.js';
import { hashBlocks, validBlockSize } from './protocol.js';

export { checkVolumeName } from './metadata.js';

export interface CreateReplicaOptions {
  volume: string;
  sizeBytes: number;
  /** The per-volume credential engines prove they hold (raw bytes, at least 16). */
  secret: Buffer;
  epoch?: number;
}

const DATA_FILE = 'data';
const ZERO_CHUNK = Buffer.alloc(1024 * 1024);
const HASH_PIECE_BYTES = 8 * 1024 * 1024;

/**
 * One replica of one volume: `<dataDir>/<volume>/` holding `data` (a sparse file of the volume's
 * size), `meta.json` (written atomically; its presence marks a complete replica) and `secret`
 * (mode 0600). The I/O methods use node:fs's callback API on one kept-open descriptor, the
 * cheapest path Node has; close() waits for them, so the descriptor is never reused under them.
 */
export class ReplicaStore {
  readonly #dir: string;
  readonly #dataPath: string;
  readonly #fd: number;
  readonly #secret: Buffer;
  readonly #fsutil: FsUtil;
  #meta: ReplicaMetadata;
  #metaChain: Promise<void> = Promise.resolve();
  #inflight = 0;
  readonly #writes = new InlineWrites();
  #closing: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  private constructor(dir: string, fd: number, meta: ReplicaMetadata, secret: Buffer, fsutil: FsUtil) {
    this.#dir = dir;
    this.#dataPath = join(dir, DATA_FILE);
    this.#fd = fd;
    this.#meta = meta;
    this.#secret = secret;
    this.#fsutil = fsutil;
  }

  /**
   * Creates the replica, or returns the existing one when it has the same size and secret
   * (idempotent); a different one rejects with code EXISTS. A create a crash interrupted (no
   * meta.json yet) is started over.
   */
  static async create(
    dataDir: string,
    options: CreateReplicaOptions,
    fsutil: FsUtil = defaultFsUtil(),
  ): Promise<ReplicaStore> {
    const { volume, sizeBytes, secret, epoch = 0 } = options;
    const meta: ReplicaMetadata = { version: 1, volume, sizeBytes, epoch, dirty: false, rebuilding: false };
    validateMetadata(meta, `new replica ${volume}`);
    checkSecret(secret, volume);
    const dir = join(dataDir, volume);
    return withDirLock(dir, async () => {
      const existing = await ReplicaStore.#openStore(dataDir, volume, fsutil).catch(
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return undefined;
          throw err;
        },
      );
      if (existing) {
        const sameSecret =
          existing.#secret.length === secret.length && timingSafeEqual(existing.#secret, secret);
        if (existing.sizeBytes === sizeBytes && sameSecret) return existing;
        await existing.close();
        const what = existing.sizeBytes === sizeBytes ? 'a different secret' : `size ${existing.sizeBytes}`;
        throw codedError(`replica ${volume} already exists with ${what}`, 'EXISTS');
      }
      await fsp.mkdir(dataDir, { recursive: true });
      await fsp.mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      await removeTempFiles(dir);
      await writeSecret(dir, secret);
      const fd = await openFd(join(dir, DATA_FILE), 'w', 0o600);
      try {
        await ftruncate(fd, sizeBytes);
        await fsync(fd);
      } finally {
        await closeFd(fd);
      }
      // Last: meta.json commits the replica (its directory fsync also covers `data` and `secret`).
      await writeMetadataAtomically(dir, meta);
      await syncDir(dataDir);
      return ReplicaStore.#openStore(dataDir, volume, fsutil);
    });
  }

  /** Opens an existing replica; rejects with code ENOENT when there is none. */
  static async open(
    dataDir: string,
    volume: string,
    fsutil: FsUtil = defaultFsUtil(),
  ): Promise<ReplicaStore> {
    checkVolumeName(volume);
    return withDirLock(join(dataDir, volume), () => ReplicaStore.#openStore(dataDir, volume, fsutil));
  }

  /** The volumes with a complete replica in dataDir, sorted. */
  static async list(dataDir: string): Promise<string[]> {
    const entries = await fsp
      .readdir(dataDir, { withFileTypes: true })
      .catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [];
        throw err;
      });
    const names: string[] = [];
    for (const entry of entries) {
      if (!entry.isDirectory() || !isVolumeName(entry.name)) continue;
      if (fs.existsSync(join(dataDir, entry.name, META_FILE))) names.push(entry.name);
    }
    return names.sort();
  }

  /** Deletes the replica's files; nothing to delete is fine. Close the store first. */
  static async remove(dataDir: string, volume: string): Promise<void> {
    checkVolumeName(volume);
    const dir = join(dataDir, volume);
    return withDirLock(dir, async () => {
      // meta.json first, durably: a crash in the middle leaves an incomplete replica, never a torn one.
      await fsp.rm(join(dir, META_FILE), { force: true });
      if (fs.existsSync(dir)) await syncDir(dir);
      await fsp.rm(dir, { recursive: true, force: true });
      if (fs.existsSync(dataDir)) await syncDir(dataDir);
    });
  }

  get volume(): string {
    return this.#meta.volume;
  }
  get sizeBytes(): number {
    return this.#meta.sizeBytes;
  }
  get epoch(): number {
    return this.#meta.epoch;
  }
  get dirty(): boolean {
    return this.#meta.dirty;
  }
  get rebuilding(): boolean {
    return this.#meta.rebuilding;
  }
  /** A copy of the volume's credential. */
  get secret(): Buffer {
    return Buffer.from(this.#secret);
  }

  /** The bytes of [offset, offset+length); holes and anything past the file's end read as zeroes. */
  async read(offset: number, length: number): Promise<Buffer> {
    this.#checkRange(offset, length);
    this.#begin();
    try {
      return await readAt(this.#fd, offset, length);
    } finally {
      this.#end();
    }
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.#checkRange(offset, data.length);
    this.#begin();
    try {
      await this.#writes.write(this.#fd, offset, data);
    } finally {
      this.#end();
    }
  }

  /** Makes every completed write durable. */
  async flush(): Promise<void> {
    this.#begin();
    try {
      await fdatasync(this.#fd);
    } finally {
      this.#end();
    }
  }

  /** Deallocates the range; it reads as zeroes afterwards. */
  async trim(offset: number, length: number): Promise<void> {
    this.#checkRange(offset, length);
    if (length === 0) return;
    this.#begin();
    try {
      await this.#fsutil.punchHole(this.#dataPath, offset, length);
    } finally {
      this.#end();
    }
  }

  /** Zeroes the range: allocated zero blocks with noHole, a hole otherwise. */
  async writeZeroes(offset: number, length: number, noHole: boolean): Promise<void> {
    if (!noHole) return this.trim(offset, length);
    this.#checkRange(offset, length);
    this.#begin();
    try {
      for (let at = offset, end = offset + length; at < end; at += ZERO_CHUNK.length) {
        await writeAt(this.#fd, at, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, end - at)));
      }
    } finally {
      this.#end();
    }
  }

  /** The allocated ranges inside [offset, offset+length) (filesystem-block granular). */
  async extents(offset: number, length: number): Promise<Extent[]> {
    this.#checkRange(offset, length);
    this.#begin();
    try {
      return await this.#fsutil.extents(this.#dataPath, offset, length);
    } finally {
      this.#end();
    }
  }

  /** SHA-256 of each blockSize block of the range (the last one may be short), as HASH replies carry. */
  async hash(offset: number, length: number, blockSize: number): Promise<Buffer[]> {
    if (!validBlockSize(blockSize)) throw new RangeError(`hash block size ${blockSize} is not allowed`);
    this.#checkRange(offset, length);
    // Whole blocks per piece, so a block never straddles two reads.
    const piece = Math.max(blockSize, HASH_PIECE_BYTES - (HASH_PIECE_BYTES % blockSize));
    const digests: Buffer[] = [];
    this.#begin();
    try {
      for (let at = offset, end = offset + length; at < end; at += piece) {
        const data = await readAt(this.#fd, at, Math.min(piece, end - at));
        digests.push(...hashBlocks(data, blockSize));
      }
    } finally {
      this.#end();
    }
    return digests;
  }

  /** Persists a newer epoch; an older one rejects with code ESTALE. */
  setEpoch(epoch: number): Promise<void> {
    if (!Number.isSafeInteger(epoch) || epoch < 0) {
      return Promise.reject(codedError(`epoch ${epoch} must be a non-negative integer`, 'EINVAL'));
    }
    return this.#updateMeta((meta) => {
      if (epoch < meta.epoch) {
        throw codedError(`replica ${meta.volume}: epoch ${epoch} is older than ${meta.epoch}`, 'ESTALE');
      }
      return epoch === meta.epoch ? undefined : { ...meta, epoch };
    });
  }

  setDirty(dirty: boolean): Promise<void> {
    return this.#updateMeta((meta) => (meta.dirty === dirty ? undefined : { ...meta, dirty }));
  }

  setRebuilding(rebuilding: boolean): Promise<void> {
    return this.#updateMeta((meta) => (meta.rebuilding === rebuilding ? undefined : { ...meta, rebuilding }));
  }

  /**
   * Grows the volume (same size: no-op; smaller: EINVAL, volumes never shrink); resolves with
   * whether it grew. The data file is extended and fsynced first, then meta.json written: a crash
   * in between leaves the file longer than meta.json (open() trims it), never shorter. Range checks
   * read the in-memory metadata, replaced in one step after both, so nothing passes the old end
   * before the file and meta.json hold the new size.
   */
  grow(sizeBytes: number): Promise<boolean> {
    let grown = false;
    return this.#updateMeta(async (meta) => {
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes < meta.sizeBytes)
        throw codedError(
          `replica ${meta.volume}: ${meta.sizeBytes} -> ${sizeBytes} bytes; volumes never shrink`,
          'EINVAL',
        );
      if (sizeBytes === meta.sizeBytes) return undefined;
      const next = validateMetadata({ ...meta, sizeBytes }, `replica ${meta.volume}`);
      await ftruncate(this.#fd, sizeBytes);
      await fsync(this.#fd); // not fdatasync: it may skip a size change
      grown = true;
      return next;
    }).then(() => grown);
  }

  /** Drops all data (before a full rebuild): the file is truncated to nothing and back to full size. */
  resetData(): Promise<void> {
    // In the metadata chain, so a grow cannot run between the two truncates.
    return this.#updateMeta(async (meta) => {
      await ftruncate(this.#fd, 0);
      await ftruncate(this.#fd, meta.sizeBytes);
      // Durable, so old data cannot come back after a crash (fdatasync may skip a size change).
      await fsync(this.#fd);
      return undefined;
    });
  }

  /** Waits for running operations, then closes the data file; later calls reject with EBADF. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#inflight > 0) await new Promise<void>((done) => (this.#drained = done));
      await closeFd(this.#fd);
    })();
    return this.#closing;
  }

  /** Metadata updates (and size changes) run one at a time, each computed from the last persisted state. */
  #updateMeta(
    change: (meta: ReplicaMetadata) => ReplicaMetadata | undefined | Promise<ReplicaMetadata | undefined>,
  ): Promise<void> {
    const next = this.#metaChain.then(async () => {
      this.#begin();
      try {
        const updated = await change(this.#meta);
        if (!updated) return;
        await writeMetadataAtomically(this.#dir, updated);
        this.#meta = updated;
      } finally {
        this.#end();
      }
    });
    this.#metaChain = next.catch(() => {});
    return next;
  }

  #checkRange(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.#meta.sizeBytes
    ) {
      throw new RangeError(
        `range ${offset}+${length} is outside volume ${this.#meta.volume} (${this.#meta.sizeBytes} bytes)`,
      );
    }
  }

  #begin(): void {
    if (this.#closing) throw codedError(`replica store of ${this.#meta.volume} is closed`, 'EBADF');
    this.#inflight++;
  }

  #end(): void {
    this.#inflight--;
    if (this.#inflight === 0) this.#drained?.();
  }

  static async #openStore(dataDir: string, volume: string, fsutil: FsUtil): Promise<ReplicaStore> {
    const dir = join(dataDir, volume);
    const meta = await readMetadata(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw codedError(`no replica of volume ${volume} in ${dataDir}`, 'ENOENT');
      throw err;
    });
    if (meta.volume !== volume) {
      throw codedError(`${join(dir, META_FILE)}: field "volume" is ${meta.volume}, not ${volume}`, 'EINVAL');
    }
    const secret = await readSecret(dir, volume);
    await removeTempFiles(dir);
    const fd = await openFd(join(dir, DATA_FILE), 'r+');
    try {
      // A crash inside resetData() can leave the file short (holes are what it would hold), one
      // inside grow() long (nothing was ever written past meta.json's size): either is fixed here.
      if ((await fstat(fd)).size !== meta.sizeBytes) await ftruncate(fd, meta.sizeBytes);
    } catch (err) {
      await closeFd(fd);
      throw err;
    }
    return new ReplicaStore(dir, fd, meta, secret, fsutil);
  }
}
