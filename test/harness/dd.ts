/**
 * dd as the tests run it: block copies between files and devices with its operands spelled out
 * (bs, count, skip, seek, iflag, oflag, conv), always `status=none`. A child process, so a test that
 * serves the device's NBD export in-process never blocks its own event loop on the I/O.
 */
import { type RunResult, run } from '../../lib/exec.js';

export interface DdOperands {
  /** Input file or device (`if=`). */
  from: string;
  /** Output file or device (`of=`). */
  to: string;
  bs: string;
  count?: number;
  /** Input blocks to skip. */
  skip?: number | string;
  /** Output blocks to seek over. */
  seek?: number | string;
  iflag?: string;
  oflag?: string;
  conv?: string;
}

/** Runs dd; fails on a non-zero exit unless `allowFailure` (then the caller reads `code`). */
export function dd(operands: DdOperands, allowFailure = false): Promise<RunResult> {
  const { from, to, ...rest } = operands;
  const args = [`if=${from}`, `of=${to}`];
  for (const [key, value] of Object.entries(rest)) if (value !== undefined) args.push(`${key}=${value}`);
  return run('dd', [...args, 'status=none'], { allowFailure });
}
