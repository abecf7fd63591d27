/**
 * Expansion of an RWX volume under its running export. ControllerExpandVolume raises the
 * Volume's size and answers node_expansion_required=false (client nodes hold NFS mounts, nothing
 * to grow there); the replicas grow, then the engine on the share manager's node offers the new
 * size. The share manager notices by asking the engine (one NBD handshake on its local socket per
 * tick, no API access needed) and grows its block device and the mounted filesystem online with
 * the node plugin's own NodeExpandVolume code. Clients see the new size at their next statfs.
 */
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { ExportProbe } from '../node/block-device.js';

export interface GrowthWatchOptions {
  volumeId: string;
  /** The engine's socket on this node. */
  socketPath: string;
  /** The size the device had when the share manager attached it. */
  attachedBytes: number;
  intervalMs: number;
  probe: ExportProbe;
  /** Grows the device to what the engine serves, then the filesystem; the device's size afterwards. */
  grow(): Promise<number>;
  logger: Logger;
}

export class GrowthWatch {
  private knownBytes: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lastFailure: string | undefined;

  constructor(private readonly options: GrowthWatchOptions) {
    this.knownBytes = options.attachedBytes;
  }

  get sizeBytes(): number {
    return this.knownBytes;
  }

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.check().finally(() => {
        this.running = undefined;
      });
    }, this.options.intervalMs);
    this.timer.unref();
  }

  /** One look at the engine: grows when it serves more than the device has. Never throws. */
  async check(): Promise<void> {
    const { volumeId, logger } = this.options;
    try {
      const [served] = await this.options.probe(this.options.socketPath, [volumeId]);
      if (served === undefined || served <= this.knownBytes) return;
      if (this.lastFailure === undefined)
        logger.info(
          { volumeId, from: this.knownBytes, to: served },
          'the volume grew; growing the exported filesystem',
        );
      this.knownBytes = await this.options.grow();
      logger.info({ volumeId, sizeBytes: this.knownBytes }, 'exported filesystem grown');
    } catch (err) {
      // The engine restarting or a busy resize: the next tick tries again. The same reason is
      // said once, not every tick.
      const reason = errorMessage(err);
      if (reason !== this.lastFailure)
        logger.warn({ volumeId, err: reason }, 'could not grow the exported filesystem yet; retrying');
      this.lastFailure = reason;
      return;
    }
    this.lastFailure = undefined;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
