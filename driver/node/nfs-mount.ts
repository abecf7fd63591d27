/**
 * The node plugin's NFS mount of an RWX volume: `mount -t nfs4 -o <nfsOptions> <server>:/ <target>`,
 * where the server is the volume's Service address and the options are the class's (validated
 * by the webhook against nfs(5)). `softerr` (Linux 5.6+) is detected, not guessed: the mount is
 * tried as asked, and only when the kernel refuses the options is it tried once more with `soft`
 * in place of `softerr` — which succeeding proves softerr was the one the kernel lacked. Any other
 * refusal is reported in the mount's own words, so the user sees what to fix in the class.
 * NodeStageVolume of an RWX Filesystem volume calls it (stage-nfs.ts).
 */
import { mkdir } from 'node:fs/promises';
import { isIP } from 'node:net';
import { CommandError, run } from '../../lib/exec.js';
import { type CommandRunner, findMount, type MountEntry, readMountInfo } from './mounts.js';

export class NfsMountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NfsMountError';
  }
}

export interface NfsMountDeps {
  runner?: CommandRunner;
  mounts?: () => Promise<MountEntry[]>;
}

export interface NfsMountResult {
  /** The options the mount used: the class's, or with soft in place of softerr. */
  options: string;
  softerrReplaced: boolean;
}

/** `<server>:/`, with an IPv6 address in brackets as mount.nfs wants it. */
export function nfsSource(server: string): string {
  return `${isIP(server) === 6 ? `[${server}]` : server}:/`;
}

/** What mount.nfs and the kernel say when an option is not known to them. */
const REFUSED_OPTION = /incorrect mount option|invalid argument|unknown parameter|bad option|invalid option/i;

function replaceSofterr(options: string): string | undefined {
  const parts = options.split(',');
  if (!parts.includes('softerr')) return undefined;
  return parts.map((part) => (part === 'softerr' ? 'soft' : part)).join(',');
}

function mountWords(err: unknown): string {
  if (err instanceof CommandError) return err.stderr.trim() || err.message;
  return err instanceof Error ? err.message : String(err);
}

export async function mountNfs(
  server: string,
  target: string,
  options: string,
  deps: NfsMountDeps = {},
): Promise<NfsMountResult> {
  const runner = deps.runner ?? run;
  const source = nfsSource(server);
  const existing = await findMount(target, await (deps.mounts ?? readMountInfo)());
  if (existing !== undefined) {
    if (existing.fsType.startsWith('nfs') && existing.source === source)
      return { options: existing.options.join(','), softerrReplaced: false };
    throw new NfsMountError(
      `${target} already has ${existing.source} (${existing.fsType}) mounted, not ${source}`,
    );
  }
  await mkdir(target, { recursive: true });
  const attempt = (opts: string) =>
    runner('mount', ['-t', 'nfs4', '-o', opts, source, target], { timeoutMs: 120_000 });
  try {
    await attempt(options);
    return { options, softerrReplaced: false };
  } catch (err) {
    const words = mountWords(err);
    const fallback = replaceSofterr(options);
    if (fallback === undefined || !REFUSED_OPTION.test(words))
      throw new NfsMountError(`mount -t nfs4 -o ${options} ${source} refused: ${words}`);
    try {
      await attempt(fallback);
      return { options: fallback, softerrReplaced: true };
    } catch (retryErr) {
      throw new NfsMountError(
        `mount -t nfs4 -o ${options} ${source} refused: ${words}; with soft in place of softerr too: ${mountWords(retryErr)}`,
      );
    }
  }
}
