/**
 * The size limit of a live loop device (`lo_sizelimit`): read from sysfs, raised with
 * `tandem-fsutil loop-sizelimit` (LOOP_GET_STATUS64 → new limit → LOOP_SET_STATUS64; util-linux
 * sets a limit only when attaching). The kernel resizes the device in place and announces it
 * (a change uevent with RESIZE=1); a filesystem on it stays mounted and can then be grown.
 */
import { readFile, realpath } from 'node:fs/promises';
import { basename } from 'node:path';
import { run } from '../../lib/exec.js';
import { locateFsUtil } from '../replica/fsutil.js';
import type { CommandRunner } from './mounts.js';

/** `lo_sizelimit` of a loop device (0: none, the backing file's size decides); undefined for no loop. */
export async function loopSizeLimit(device: string): Promise<number | undefined> {
  try {
    const name = basename(await realpath(device));
    const text = (await readFile(`/sys/block/${name}/loop/sizelimit`, 'utf8')).trim();
    const limit = Number(text);
    return Number.isSafeInteger(limit) && limit >= 0 ? limit : undefined;
  } catch {
    return undefined;
  }
}

export interface SizeLimitResult {
  sizeLimit: number;
  /** The device's capacity afterwards: the limit, or less when the backing file is smaller. */
  sizeBytes: number;
}

export function parseSizeLimitOutput(stdout: string): SizeLimitResult {
  const parsed = JSON.parse(stdout) as { sizeLimit?: unknown; sizeBytes?: unknown };
  const { sizeLimit, sizeBytes } = parsed;
  if (
    typeof sizeLimit !== 'number' ||
    typeof sizeBytes !== 'number' ||
    !Number.isSafeInteger(sizeLimit) ||
    !Number.isSafeInteger(sizeBytes)
  )
    throw new Error(`tandem-fsutil loop-sizelimit printed ${stdout.trim()}`);
  return { sizeLimit, sizeBytes };
}

/**
 * Raises `device`'s size limit to `bytes` (a multiple of 512). The helper refuses to lower it and
 * refuses a device attached without a limit (growing it that way could shrink it instead).
 */
export async function raiseLoopSizeLimit(
  device: string,
  bytes: number,
  runner: CommandRunner = run,
  binary: string = locateFsUtil(),
): Promise<SizeLimitResult> {
  const result = await runner(binary, ['loop-sizelimit', device, String(bytes)], { timeoutMs: 60_000 });
  return parseSizeLimitOutput(result.stdout);
}
