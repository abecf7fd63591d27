import { readFile } from 'node:fs/promises';
import { MIN_SECRET_BYTES } from '../replica/protocol.js';

/**
 * Reads a volume credential file: its bytes, exactly as stored (the controller writes 32 random
 * bytes; `head -c 32 /dev/urandom > file` makes one by hand). Too short a file is refused with a
 * message that says how to make a good one.
 */
export async function readCredentialFile(path: string): Promise<Buffer> {
  const secret = await readFile(path);
  if (secret.length < MIN_SECRET_BYTES) {
    throw new Error(
      `credential file ${path} holds ${secret.length} bytes; at least ${MIN_SECRET_BYTES} are needed (e.g. head -c 32 /dev/urandom > ${path})`,
    );
  }
  return secret;
}
