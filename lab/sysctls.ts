/**
 * Machine-wide kernel settings a kubelet changes when it starts (with protectKernelDefaults off
 * it sets what it considers safe: vm.overcommit_memory=1, kernel.panic=10, ...). The lab records
 * the machine's values before its first kubelet starts and puts them back when the last cluster
 * of real nodes on the machine ends, so a lab or a test run leaves the machine as it found it.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isProcessAlive } from '../lib/pid.js';

/** From the kubelet's container manager (setupKernelTunables); net.* settings are per namespace. */
export const KUBELET_TUNABLES = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
] as const;

const CLAIMS_DIR = '/run/tandem-sim';
const SNAPSHOT = join(CLAIMS_DIR, 'sysctls.json');
const USERS_DIR = join(CLAIMS_DIR, 'sysctl-users');

/** Records the machine's values unless a live cluster already did, and registers `pid` as a user. */
export function holdSysctls(pid: number = process.pid): void {
  mkdirSync(USERS_DIR, { recursive: true });
  if (liveUsers().length === 0 || !existsSync(SNAPSHOT)) {
    const values = Object.fromEntries(KUBELET_TUNABLES.map((key) => [key, read(key)]));
    writeFileSync(SNAPSHOT, JSON.stringify(values));
  }
  writeFileSync(join(USERS_DIR, String(pid)), '');
}

/**
 * Drops `pid` (and users that died) and, when no live user is left, writes the recorded values
 * back. Returns the settings it could not restore.
 */
export function releaseSysctls(pid: number = process.pid): string[] {
  rmSync(join(USERS_DIR, String(pid)), { force: true });
  if (liveUsers().length > 0 || !existsSync(SNAPSHOT)) return [];
  const failed: string[] = [];
  const values = JSON.parse(readFileSync(SNAPSHOT, 'utf8')) as Record<string, string>;
  for (const key of KUBELET_TUNABLES) {
    const value = values[key];
    if (value === undefined || read(key) === value) continue;
    try {
      writeFileSync(join('/proc/sys', key), value);
    } catch {
      failed.push(`${key.replaceAll('/', '.')}=${value}`);
    }
  }
  rmSync(SNAPSHOT, { force: true });
  rmSync(USERS_DIR, { recursive: true, force: true });
  return failed;
}

function liveUsers(): number[] {
  let entries: string[] = [];
  try {
    entries = readdirSync(USERS_DIR);
  } catch {
    return [];
  }
  const live: number[] = [];
  for (const entry of entries) {
    const pid = Number(entry);
    if (pid > 0 && isProcessAlive(pid)) live.push(pid);
    else rmSync(join(USERS_DIR, entry), { force: true });
  }
  return live;
}

function read(key: string): string {
  return readFileSync(join('/proc/sys', key), 'utf8').trim();
}
