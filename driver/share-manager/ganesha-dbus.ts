/**
 * Ganesha's own statistics. Ganesha publishes them only on D-Bus (`org.ganesha.nfsd`, interface
 * `org.ganesha.nfsd.exportstats`), and it connects to the *system* bus, which a Pod does not have.
 * So each share manager runs a private bus of its own: `dbus-daemon` with a configuration that
 * lets only root connect, listening on a socket in the share manager's run folder, and Ganesha is
 * pointed at it with DBUS_SYSTEM_BUS_ADDRESS (libdbus reads it for the system bus). The share
 * manager asks it with `dbus-send` at scrape time. Nothing else on the node sees that bus, and
 * Ganesha's administrative methods on it (adding or removing exports) are reachable only from
 * inside the share manager's own container.
 *
 * Without dbus-daemon the share manager serves all the same; only the operation counts are missing.
 */
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../../lib/exec.js';
import { type Logger, silentLogger } from '../../lib/log.js';
import { Service } from '../../lib/service.js';

export const GANESHA_BUS_NAME = 'org.ganesha.nfsd';
const EXPORT_MGR_PATH = '/org/ganesha/nfsd/ExportMgr';
const GLOBAL_OPS = 'org.ganesha.nfsd.exportstats.GetGlobalOPS';

/** A bus only root may use: the share manager and its Ganesha both run as root. */
export function privateBusConfig(socketPath: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socketPath}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny user="*"/>
    <allow user="root"/>
    <allow own="${GANESHA_BUS_NAME}"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`;
}

/**
 * NFS requests Ganesha served, by protocol ("NFSv41", "NFSv42", ...), from GetGlobalOPS as
 * `dbus-send --print-reply` prints it: status, message, a timestamp struct, then a struct of
 * alternating protocol names and counts.
 */
export function parseGlobalOps(reply: string): Record<string, number> {
  if (!/^\s*boolean true\s*$/m.test(reply))
    throw new Error(`Ganesha refused GetGlobalOPS: ${reply.trim().split('\n').slice(0, 3).join(' ')}`);
  const counts: Record<string, number> = {};
  let name: string | undefined;
  for (const line of reply.split('\n')) {
    const text = /^\s*string "([^"]*)"\s*$/.exec(line);
    if (text) {
      name = text[1];
      continue;
    }
    // A count belongs to the name right before it (the status message is followed by a struct).
    const count = /^\s*uint64 (\d+)\s*$/.exec(line);
    if (count && name !== undefined) counts[name] = Number(count[1]);
    name = undefined;
  }
  return counts;
}

export class PrivateBus {
  private constructor(
    private readonly service: Service,
    readonly address: string,
  ) {}

  /** Starts dbus-daemon on `<runDir>/bus`; undefined (and why, logged) when it cannot. */
  static async start(runDir: string, logger: Logger = silentLogger()): Promise<PrivateBus | undefined> {
    const socket = join(runDir, 'bus');
    const config = join(runDir, 'bus.conf');
    await writeFile(config, privateBusConfig(socket), { mode: 0o600 });
    // The run folder is on the node: a killed predecessor here left its socket, which would make
    // dbus-daemon refuse to bind ("Address already in use") and pass the wait below at once.
    await rm(socket, { force: true });
    const service = new Service({
      name: 'dbus-daemon',
      command: 'dbus-daemon',
      args: ['--config-file', config, '--nofork', '--nopidfile', '--nosyslog'],
      logFile: join(runDir, 'bus.log'),
      logger,
      stopGraceMs: 2_000,
    });
    const deadline = Date.now() + 5_000;
    while (!existsSync(socket)) {
      if (!service.running || Date.now() > deadline) {
        await service.kill();
        logger.warn(
          { runDir },
          'no private D-Bus for Ganesha (dbus-daemon did not start): NFS operation counts are not available',
        );
        return undefined;
      }
      await sleep(20);
    }
    return new PrivateBus(service, `unix:path=${socket}`);
  }

  /** Ganesha's request counts by protocol, or undefined while it has not joined the bus yet. */
  async globalOps(): Promise<Record<string, number> | undefined> {
    const result = await run(
      'dbus-send',
      ['--system', '--print-reply', `--dest=${GANESHA_BUS_NAME}`, EXPORT_MGR_PATH, GLOBAL_OPS],
      {
        env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: this.address },
        timeoutMs: 5_000,
        allowFailure: true,
      },
    ).catch(() => undefined);
    if (result === undefined || result.code !== 0) return undefined;
    return parseGlobalOps(result.stdout);
  }

  stop(): Promise<unknown> {
    return this.service.stop();
  }
}
