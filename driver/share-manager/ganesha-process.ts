/**
 * Runs NFS-Ganesha for one share manager: writes the generated configuration, starts
 * `ganesha.nfsd` in the foreground in a UTS namespace whose hostname is the volume's pinned
 * identity (the fs_ng recovery backend keys client records by hostname), and answers once the
 * NFS port serves. A Ganesha that exits instead says why: the last lines of its log become the
 * error (and the Event the controller records on the claim).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Logger, silentLogger } from '../../lib/log.js';
import { Nfs4Client } from '../../lib/nfs4/client.js';
import { Nfs4Session } from '../../lib/nfs4/session.js';
import { Service } from '../../lib/service.js';
import { type GaneshaSettings, renderGaneshaConfig } from './ganesha-config.js';

export interface GaneshaOptions {
  /** Holds ganesha.conf, its log and pid file (not on the volume: they belong to this run). */
  runDir: string;
  settings: GaneshaSettings;
  /** The hostname Ganesha sees, the same wherever this volume's share manager runs. */
  identity: string;
  ganeshaBinary?: string;
  startTimeoutMs?: number;
  /** The share manager's private bus (ganesha-dbus.ts), where Ganesha publishes its statistics. */
  busAddress?: string;
  logger?: Logger;
}

export class GaneshaStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GaneshaStartError';
  }
}

/**
 * What Ganesha always complains about here and what explains nothing: no D-Bus system bus in the
 * pod, no rpcbind to register with (NFSv4 needs none), no Kerberos keytab (AUTH_SYS only).
 */
const EXPECTED_COMPLAINTS = /DBUS|dbus|Cannot register|krb5|keytab/;

const PSEUDO_FSID = '152.152';

const answers = (endpoint: { host: string; port: number }) => Nfs4Session.answers(endpoint, 1_000);

const HOSTNAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export class RunningGanesha {
  private constructor(
    private readonly service: Service,
    readonly logFile: string,
  ) {}

  static async start(options: GaneshaOptions): Promise<RunningGanesha> {
    if (!HOSTNAME_PATTERN.test(options.identity))
      throw new GaneshaStartError(
        `Ganesha identity ${JSON.stringify(options.identity)} is not a valid hostname`,
      );
    const endpoint = { host: options.settings.bindAddress, port: options.settings.port };
    if (await answers(endpoint))
      throw new GaneshaStartError(
        `another NFS server already serves ${endpoint.host}:${endpoint.port}; a share manager needs the port to itself`,
      );
    await mkdir(options.runDir, { recursive: true, mode: 0o700 });
    await mkdir(options.settings.recoveryRoot, { recursive: true, mode: 0o700 });
    const configFile = join(options.runDir, 'ganesha.conf');
    const logFile = join(options.runDir, 'ganesha.log');
    await writeFile(configFile, renderGaneshaConfig(options.settings), { mode: 0o600 });
    await writeFile(logFile, '');
    const binary = options.ganeshaBinary ?? 'ganesha.nfsd';
    // unshare gives Ganesha a hostname of its own without touching the node's (or the pod's).
    const service = new Service({
      name: 'ganesha',
      command: 'unshare',
      args: [
        '--uts',
        '--',
        'sh',
        '-c',
        'hostname "$1" && exec "$2" -F -L "$3" -f "$4" -p "$5"',
        'ganesha',
        options.identity,
        binary,
        logFile,
        configFile,
        join(options.runDir, 'ganesha.pid'),
      ],
      ...(options.busAddress === undefined
        ? {}
        : { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: options.busAddress } }),
      logFile: join(options.runDir, 'ganesha.stdout'),
      logger: options.logger ?? silentLogger(),
      stopGraceMs: 10_000,
    });
    const running = new RunningGanesha(service, logFile);
    const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
    for (;;) {
      if (!service.running) {
        const exit = await service.exited;
        throw new GaneshaStartError(
          `NFS-Ganesha exited during start (${exit.signal ?? `code ${exit.code}`}): ${await running.failureLines()}`,
        );
      }
      if (await answers(endpoint)) {
        await running.checkExportServed(endpoint);
        return running;
      }
      if (Date.now() > deadline) {
        await service.kill();
        throw new GaneshaStartError(
          `NFS-Ganesha did not serve on ${endpoint.host}:${endpoint.port} within ${options.startTimeoutMs ?? 30_000} ms: ${await running.failureLines()}`,
        );
      }
      await sleep(100);
    }
  }

  get pid(): number | undefined {
    return this.service.pid;
  }

  get running(): boolean {
    return this.service.running;
  }

  get exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.service.exited;
  }

  /** SIGTERM (Ganesha writes its recovery records and exits), SIGKILL after 10 s. */
  stop(): Promise<unknown> {
    return this.service.stop();
  }

  /**
   * Ganesha serves its pseudo root even when the export failed (a missing path, an FSAL that did
   * not load); a client would mount an empty, read-only tree. So the export root is asked for its
   * filesystem id: the pseudo filesystem's is 152.152.
   */
  private async checkExportServed(endpoint: { host: string; port: number }): Promise<void> {
    const probe = await Nfs4Client.connect({
      endpoint,
      ownerId: `tandem-probe-${process.pid}`,
      timeoutMs: 5_000,
    });
    try {
      if ((await probe.rootFsid()) !== PSEUDO_FSID) return;
    } finally {
      await probe.destroy().catch(() => undefined);
    }
    await this.service.kill();
    throw new GaneshaStartError(`NFS-Ganesha started but serves no export: ${await this.failureLines()}`);
  }

  /** The log lines that explain a failure: fatal, critical and major ones, else the last few. */
  async failureLines(): Promise<string> {
    const log = await readFile(this.logFile, 'utf8').catch(() => '');
    const stdout = await readFile(this.logFile.replace(/\.log$/, '.stdout'), 'utf8').catch(() => '');
    const lines = `${log}\n${stdout}`.split('\n').filter((line) => line.trim() !== '');
    const serious = lines.filter(
      (line) => /:(FATAL|CRIT|MAJ) :/.test(line) && !EXPECTED_COMPLAINTS.test(line),
    );
    // The first serious lines name the cause (e.g. the FSAL's own complaint); what follows are
    // its consequences (the export block that failed). Without any, the log's end says most.
    const chosen = serious.length > 0 ? serious.slice(0, 5) : lines.slice(-4);
    // Ganesha's prefix is "date : epoch x : host : nfs-ganesha-pid[thread] function :COMPONENT :LEVEL :text".
    return chosen.map((line) => line.replace(/^.*?\] /, '')).join('; ') || 'it logged nothing';
  }
}
