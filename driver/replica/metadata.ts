import * as fsp from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The small files of a replica's directory: `meta.json` (what a replica knows about itself besides
 * its data) and `secret`, both replaced atomically, and the volume-name rule that keeps the
 * directory inside the data directory.
 */

/** The contents of `meta.json`. */
export interface ReplicaMetadata {
  version: 1;
  volume: string;
  sizeBytes: number;
  epoch: number;
  dirty: boolean;
  rebuilding: boolean;
}

export const META_FILE = 'meta.json';
export const META_TMP_FILE = 'meta.json.tmp';
export const SECRET_FILE = 'secret';
const MIN_SECRET_BYTES = 16;
const MAX_SECRET_BYTES = 4096;

/** The parts of node:fs/promises the durable writes use; tests pass a recording wrapper. */
export interface DurableFs {
  open(path: string, flags: string, mode?: number): Promise<SyncableHandle>;
  rename(from: string, to: string): Promise<void>;
  readFile(path: string): Promise<Buffer>;
}

export interface SyncableHandle {
  writeFile(data: Buffer): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** An Error carrying an errno-style code, like the ones node:fs throws. */
export function codedError(message: string, code: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(message);
  err.code = code;
  return err;
}

const MAX_VOLUME_NAME = 253;
/** DNS-1123 subdomain: dot-separated labels of [a-z0-9-], each starting and ending alphanumeric. */
const LABEL = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?';
const VOLUME_NAME = new RegExp(`^${LABEL}(\\.${LABEL})*$`);

/**
 * Throws unless `name` is a DNS-1123 subdomain (what Kubernetes allows for a PV name). Such a name
 * has no '/', never is '.' or '..' and has no label starting with a dot, so joining it to the data
 * directory always stays inside it.
 */
/** Whether `name` passes checkVolumeName (for listing directories, where a stray name is skipped). */
export function isVolumeName(name: string): boolean {
  try {
    checkVolumeName(name);
    return true;
  } catch {
    return false;
  }
}

export function checkVolumeName(name: string): void {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > MAX_VOLUME_NAME ||
    !VOLUME_NAME.test(name)
  ) {
    throw codedError(
      `invalid volume name ${JSON.stringify(String(name).slice(0, 300))}: need a DNS-1123 subdomain ` +
        `(lower-case letters, digits, '-' and '.', at most ${MAX_VOLUME_NAME} characters)`,
      'EINVAL',
    );
  }
}

/**
 * Writes `data` to `dir/name` so that a crash leaves either the old file or the new one, never a
 * mix: write `name.tmp`, fsync it, rename it over `name`, fsync the directory (which makes the
 * rename itself durable).
 */
export async function writeFileAtomically(
  dir: string,
  name: string,
  data: Buffer,
  mode: number,
  fs: DurableFs = fsp,
): Promise<void> {
  const target = join(dir, name);
  const tmp = `${target}.tmp`;
  const file = await fs.open(tmp, 'w', mode);
  try {
    await file.writeFile(data);
    await file.sync();
  } finally {
    await file.close();
  }
  await fs.rename(tmp, target);
  await syncDir(dir, fs);
}

/** fsync of a directory: makes the creation, rename or removal of its entries durable. */
export async function syncDir(dir: string, fs: DurableFs = fsp): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Leftovers of atomic writes a crash interrupted: never read, removed for tidiness. */
export async function removeTempFiles(dir: string): Promise<void> {
  await fsp.rm(join(dir, META_TMP_FILE), { force: true });
  await fsp.rm(join(dir, `${SECRET_FILE}.tmp`), { force: true });
}

export function checkSecret(secret: Buffer, volume: string): void {
  if (!Buffer.isBuffer(secret) || secret.length < MIN_SECRET_BYTES || secret.length > MAX_SECRET_BYTES) {
    throw codedError(
      `replica ${volume}: the secret must be ${MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES} bytes`,
      'EINVAL',
    );
  }
}

/** The volume's credential, mode 0600, raw bytes. */
export async function writeSecret(dir: string, secret: Buffer): Promise<void> {
  await writeFileAtomically(dir, SECRET_FILE, Buffer.from(secret), 0o600);
}

export async function readSecret(dir: string, volume: string): Promise<Buffer> {
  const secret = await fsp.readFile(join(dir, SECRET_FILE));
  checkSecret(secret, volume);
  return secret;
}

export async function writeMetadataAtomically(
  dir: string,
  meta: ReplicaMetadata,
  fs: DurableFs = fsp,
): Promise<void> {
  validateMetadata(meta, join(dir, META_TMP_FILE));
  const text = `${JSON.stringify(meta, null, 2)}\n`;
  await writeFileAtomically(dir, META_FILE, Buffer.from(text), 0o644, fs);
}

/**
 * Reads and strictly validates `dir/meta.json`. A `meta.json.tmp` beside it is a write that a
 * crash interrupted before its rename, so it is never read (the next write replaces it; opening
 * a store removes it). A missing meta.json rejects with code ENOENT, a bad one with EINVAL.
 */
export async function readMetadata(dir: string, fs: DurableFs = fsp): Promise<ReplicaMetadata> {
  const path = join(dir, META_FILE);
  const text = (await fs.readFile(path)).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw codedError(`${path}: not valid JSON (${(err as Error).message})`, 'EINVAL');
  }
  return validateMetadata(parsed, path);
}

const FIELDS = ['version', 'volume', 'sizeBytes', 'epoch', 'dirty', 'rebuilding'] as const;

/** Returns `value` as metadata when every field is present and valid; the error names file and field. */
export function validateMetadata(value: unknown, file: string): ReplicaMetadata {
  const bad = (what: string): never => {
    throw codedError(`${file}: ${what}`, 'EINVAL');
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('not a JSON object');
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(FIELDS as readonly string[]).includes(key)) bad(`unknown field "${key}"`);
  }
  const field = (name: (typeof FIELDS)[number], ok: (v: unknown) => boolean, want: string): void => {
    if (!(name in record)) bad(`field "${name}" is missing`);
    if (!ok(record[name])) bad(`field "${name}" must be ${want} (found ${JSON.stringify(record[name])})`);
  };
  field('version', (v) => v === 1, '1');
  field('volume', (v) => typeof v === 'string', 'a string');
  try {
    checkVolumeName(record.volume as string);
  } catch (err) {
    bad(`field "volume": ${(err as Error).message}`);
  }
  field('sizeBytes', (v) => Number.isSafeInteger(v) && (v as number) > 0, 'a positive integer');
  field('epoch', (v) => Number.isSafeInteger(v) && (v as number) >= 0, 'a non-negative integer');
  field('dirty', (v) => typeof v === 'boolean', 'true or false');
  field('rebuilding', (v) => typeof v === 'boolean', 'true or false');
  return record as unknown as ReplicaMetadata;
}
