/**
 * Per-volume data-plane credentials. The controller issues each volume's credential as a Secret
 * (`tandem-system/tandem-volume-<volume>`, key `credential`); the node reconciler copies it to
 * `<dataDir>/.credentials/<volume>` because the engine pool takes a credential *file*. The bytes
 * never appear in a log line or an error message: only lengths and names do.
 */
import { timingSafeEqual } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { ApiException, type CoreV1Api } from '@kubernetes/client-node';
import { checkVolumeName, syncDir } from '../replica/metadata.js';
import { MIN_SECRET_BYTES } from '../replica/protocol.js';

export const CREDENTIAL_NAMESPACE = 'tandem-system';
export const CREDENTIAL_KEY = 'credential';
/** The dot keeps it out of ReplicaStore.list: no volume name starts with one. */
export const CREDENTIALS_DIR = '.credentials';

export function credentialSecretName(volume: string): string {
  return `tandem-volume-${volume}`;
}

/** Where a volume's credential comes from; undefined = no Secret (yet), which callers retry. */
export interface CredentialSource {
  read(volume: string): Promise<Buffer | undefined>;
}

/** Reads the controller-issued Secrets through the API (no cache: they are read rarely). */
export class SecretCredentialSource implements CredentialSource {
  constructor(
    private readonly core: Pick<CoreV1Api, 'readNamespacedSecret'>,
    private readonly namespace = CREDENTIAL_NAMESPACE,
  ) {}

  async read(volume: string): Promise<Buffer | undefined> {
    const name = credentialSecretName(volume);
    let encoded: string | undefined;
    try {
      const secret = await this.core.readNamespacedSecret({ name, namespace: this.namespace });
      encoded = secret.data?.[CREDENTIAL_KEY];
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      // The client's error text can carry the response body: keep only the status.
      if (err instanceof ApiException)
        throw new Error(`reading Secret ${this.namespace}/${name}: HTTP ${err.code}`);
      throw err;
    }
    if (encoded === undefined)
      throw new Error(`Secret ${this.namespace}/${name} has no key "${CREDENTIAL_KEY}"`);
    const bytes = Buffer.from(encoded, 'base64');
    if (bytes.length < MIN_SECRET_BYTES)
      throw new Error(
        `Secret ${this.namespace}/${name}: key "${CREDENTIAL_KEY}" holds ${bytes.length} bytes, at least ${MIN_SECRET_BYTES} are needed`,
      );
    return bytes;
  }
}

export function credentialFilePath(dataDir: string, volume: string): string {
  checkVolumeName(volume);
  return join(dataDir, CREDENTIALS_DIR, volume);
}

/**
 * Writes the credential file (mode 0600) unless it already holds these bytes, so a resync costs
 * a read, not an fsync. Atomic: a temp file named with a leading dot (never a volume name, so it
 * cannot collide with another volume's file) is fsynced and renamed over the target.
 */
export async function writeCredentialFile(dataDir: string, volume: string, secret: Buffer): Promise<string> {
  const path = credentialFilePath(dataDir, volume);
  const current = await fsp.readFile(path).catch(() => undefined);
  if (current !== undefined && current.length === secret.length && timingSafeEqual(current, secret)) {
    return path;
  }
  const dir = join(dataDir, CREDENTIALS_DIR);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.tmp-${volume}`);
  const file = await fsp.open(tmp, 'w', 0o600);
  try {
    await file.chmod(0o600); // an older leftover temp file may have kept another mode
    await file.writeFile(secret);
    await file.sync();
  } finally {
    await file.close();
  }
  await fsp.rename(tmp, path);
  await syncDir(dir);
  return path;
}

export async function removeCredentialFile(dataDir: string, volume: string): Promise<boolean> {
  const path = credentialFilePath(dataDir, volume);
  const existed = await fsp.stat(path).then(
    () => true,
    () => false,
  );
  await fsp.rm(path, { force: true });
  await fsp.rm(join(dataDir, CREDENTIALS_DIR, `.tmp-${volume}`), { force: true });
  return existed;
}

/** Volumes with a credential file, so leftovers of deleted volumes are found on a resync. */
export async function listCredentialFiles(dataDir: string): Promise<string[]> {
  const names = await fsp.readdir(join(dataDir, CREDENTIALS_DIR)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  return names.filter((name) => !name.startsWith('.')).sort();
}
