import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException, type V1Secret } from '@kubernetes/client-node';
import {
  credentialFilePath,
  listCredentialFiles,
  removeCredentialFile,
  SecretCredentialSource,
  writeCredentialFile,
} from './credentials.js';

const secretApi = (answer: () => V1Secret) => ({
  readNamespacedSecret: async (_: { name: string; namespace: string }) => answer(),
});

describe('SecretCredentialSource', () => {
  const credential = Buffer.alloc(32, 7);

  it('decodes the credential key and names the Secret it read', async () => {
    const asked: string[] = [];
    const source = new SecretCredentialSource({
      readNamespacedSecret: async ({ name, namespace }: { name: string; namespace: string }) => {
        asked.push(`${namespace}/${name}`);
        return { data: { credential: credential.toString('base64') } };
      },
    } as never);
    expect(await source.read('vol-a')).toEqual(credential);
    expect(asked).toEqual(['tandem-system/tandem-volume-vol-a']);
  });

  it('answers undefined for a missing Secret and refuses a short or absent key without its bytes', async () => {
    const missing = new SecretCredentialSource({
      readNamespacedSecret: async () => {
        throw new ApiException(404, 'not found', 'body', {});
      },
    } as never);
    expect(await missing.read('v')).toBeUndefined();
    const short = new SecretCredentialSource(
      secretApi(() => ({ data: { credential: Buffer.from('0123456789').toString('base64') } })) as never,
    );
    await expect(short.read('v')).rejects.toThrow(/holds 10 bytes, at least 16/);
    const none = new SecretCredentialSource(secretApi(() => ({ data: {} })) as never);
    await expect(none.read('v')).rejects.toThrow(/has no key "credential"/);
  });
});

describe('credential files', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-cred-test-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes mode 0600 files, rewrites only on change, lists and removes them', async () => {
    const path = await writeCredentialFile(dir, 'vol-a', Buffer.alloc(20, 1));
    expect(path).toBe(credentialFilePath(dir, 'vol-a'));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const inode = statSync(path).ino;
    await writeCredentialFile(dir, 'vol-a', Buffer.alloc(20, 1));
    expect(statSync(path).ino).toBe(inode); // unchanged bytes: not rewritten
    await writeCredentialFile(dir, 'vol-a', Buffer.alloc(20, 2));
    expect(readFileSync(path)).toEqual(Buffer.alloc(20, 2));
    await writeCredentialFile(dir, 'vol-b', Buffer.alloc(20, 3));
    expect(await listCredentialFiles(dir)).toEqual(['vol-a', 'vol-b']);
    expect(await removeCredentialFile(dir, 'vol-a')).toBe(true);
    expect(await removeCredentialFile(dir, 'vol-a')).toBe(false);
    expect(await listCredentialFiles(dir)).toEqual(['vol-b']);
  });

  it('refuses a name that could leave the directory', () => {
    expect(() => credentialFilePath(dir, '../etc')).toThrow(/invalid volume name/);
  });
});
