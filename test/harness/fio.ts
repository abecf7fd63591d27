import { type RunResult, run } from '../../lib/exec.js';

export interface FioVerifyOptions {
  /** Bytes of the device to write and verify, e.g. '24M'. */
  size: string;
  iodepth?: number;
  /** fio writes its output (and would write state files) here. */
  cwd?: string;
  timeoutMs?: number;
  extra?: string[];
}

export interface FioJob {
  error: number;
  read: { io_bytes: number };
  write: { io_bytes: number };
}

/**
 * fio's nbd engine writing 4k random blocks with crc32c checksums, then reading every one back
 * and checking it: the verified workload of the data-plane tests. Resolves even when fio fails,
 * so the test can assert on its output.
 */
export function fioVerify(uri: string, options: FioVerifyOptions): Promise<RunResult> {
  return run(
    'fio',
    [
      '--name=verify',
      '--ioengine=nbd',
      `--uri=${uri}`,
      '--rw=randwrite',
      '--bs=4k',
      `--iodepth=${options.iodepth ?? 16}`,
      `--size=${options.size}`,
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_state_save=0', // otherwise fio leaves a state file in its working directory
      '--output-format=json',
      ...(options.extra ?? []),
    ],
    {
      timeoutMs: options.timeoutMs ?? 120_000,
      allowFailure: true,
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    },
  );
}

/** The jobs of fio's JSON output (the nbd engine prints a line before the JSON). */
export function fioJobs(stdout: string): FioJob[] {
  return (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: FioJob[] }).jobs;
}
