/**
 * Names the controller, the node plugin and the data plane must agree on, kept in one place.
 */
import { join } from 'node:path';

/** The topology key NodeGetInfo reports and placement matches: one segment per node. */
export const TOPOLOGY_NODE_KEY = 'topology.csi.tandem.dev/node';

/** Where the data plane puts engine NBD sockets and the node plugin looks for them (a shared hostPath). */
export const DEFAULT_ENGINE_SOCKET_DIR = '/run/tandem/engines';

/** The engine of `volume` on this node listens here; its NBD export is named after the volume. */
export function engineSocketPath(dir: string, volume: string): string {
  return join(dir, `${volume}.sock`);
}
