/**
 * The kernel NBD frontend (`nbd-client` → /dev/nbdN), for nodes whose kernel has the nbd module.
 * NOT exercised by the tests on the CI machines (no kernel NBD there); written to the nbd-client
 * 3.24 command line. The kernel holds the connection, so the plugin restarting does not touch it.
 * Which device a volume uses is recorded in `<stateDir>/<volume>/nbd-device` (sysfs names no
 * export), and trusted only while sysfs shows that device connected.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../lib/exec.js';
import { type CommandRunner, mountsOfDevice } from './mounts.js';

export type NbdEndpoint =
  | { kind: 'unix'; socket: string; exportName: string }
  | { kind: 'tcp'; host: string; port: number; exportName: string };

/** nbd+unix:///EXPORT?socket=PATH or nbd://HOST[:PORT]/EXPORT (no TLS: the data plane authenticates). */
export function parseNbdUri(uri: string): NbdEndpoint {
  const url = new URL(uri);
  const exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (url.protocol === 'nbd+unix:') {
    const socket = url.searchParams.get('socket');
    if (socket === null) throw new Error(`${uri}: nbd+unix URI without socket=`);
    return { kind: 'unix', socket, exportName };
  }
  if (url.protocol === 'nbd:')
    return { kind: 'tcp', host: url.hostname, port: url.port === '' ? 10809 : Number(url.port), exportName };
  throw new Error(`${uri}: only nbd:// and nbd+unix:// URIs can be attached`);
}

export function kernelNbdUsable(): boolean {
  return existsSync('/sys/module/nbd') && existsSync('/dev/nbd0');
}

const recordFile = (stateDir: string, volumeId: string) => join(stateDir, volumeId, 'nbd-device');
const sysName = (device: string) => device.replace(/^\/dev\//, '');
// A connected nbd device has a `pid` attribute (the task that set it up) in sysfs.
const connected = (device: string) => existsSync(`/sys/block/${sysName(device)}/pid`);

export async function connectedKernelDevice(stateDir: string, volumeId: string): Promise<string | undefined> {
  let device: string;
  try {
    device = (await readFile(recordFile(stateDir, volumeId), 'utf8')).trim();
  } catch {
    return undefined;
  }
  return /^\/dev\/nbd\d+$/.test(device) && connected(device) ? device : undefined;
}

async function freeDevice(): Promise<string> {
  const names = (await readdir('/sys/block')).filter((n) => /^nbd\d+$/.test(n));
  names.sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  const free = names.find((n) => !connected(`/dev/${n}`));
  if (free === undefined) throw new Error('every /dev/nbd* device is in use (raise nbds_max)');
  return `/dev/${free}`;
}

export function nbdClientArgs(endpoint: NbdEndpoint, device: string): string[] {
  const name = ['-N', endpoint.exportName];
  return endpoint.kind === 'unix'
    ? ['-unix', endpoint.socket, device, ...name]
    : [endpoint.host, String(endpoint.port), device, ...name];
}

export async function attachKernelNbd(
  stateDir: string,
  volumeId: string,
  endpoint: NbdEndpoint,
  runner: CommandRunner = run,
): Promise<string> {
  const existing = await connectedKernelDevice(stateDir, volumeId);
  if (existing !== undefined) return existing;
  const device = await freeDevice();
  await mkdir(join(stateDir, volumeId), { recursive: true });
  await runner('nbd-client', nbdClientArgs(endpoint, device), { timeoutMs: 60_000 });
  // Recorded after connecting: a crash in between leaks a connected device, whereas a record
  // written first could later name a device another volume connected, and detach would cut it.
  await writeFile(recordFile(stateDir, volumeId), `${device}\n`);
  return device;
}

export async function detachKernelNbd(
  stateDir: string,
  volumeId: string,
  runner: CommandRunner = run,
): Promise<void> {
  const device = await connectedKernelDevice(stateDir, volumeId);
  if (device !== undefined) {
    const users = await mountsOfDevice(device);
    if (users.length > 0)
      throw new Error(
        `${device} (${volumeId}) is still mounted at ${users.map((u) => u.mountPoint).join(', ')}`,
      );
    await runner('nbd-client', ['-d', device], { timeoutMs: 60_000 });
  }
  await rm(recordFile(stateDir, volumeId), { force: true });
}
