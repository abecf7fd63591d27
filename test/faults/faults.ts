/**
 * The faults the campaign throws, each as data (what, where, for how long) chosen from a seeded
 * generator, so a trial replays exactly from its seed. Applying one is the campaign's business
 * (campaign.ts); this module only decides.
 */

export type FaultKind =
  | 'kill-replica-server'
  | 'kill-engine-host'
  | 'kill-engine-process'
  | 'cut-link-short'
  | 'cut-link-long'
  | 'disk-full';

export const FAULT_KINDS: readonly FaultKind[] = [
  'kill-replica-server',
  'kill-engine-host',
  'kill-engine-process',
  'cut-link-short',
  'cut-link-long',
  'disk-full',
];

export interface Fault {
  kind: FaultKind;
  /** The simulated node it hits. */
  node: string;
  /** When it starts, from the start of the trial's fault window, in ms. */
  atMs: number;
  /** How long until the node is restarted, the link restored, the disk given back, in ms. */
  forMs: number;
}

export interface Topology {
  /** Nodes that hold replicas and no engine of their own (their data plane serves replicas only, or hosts a migration's engines). */
  replicaOnly: readonly string[];
  /** The replica node whose data plane hosts an engine. */
  engineHost: string;
  /** The node without replicas where `tandem engine` processes run. */
  engineNode: string;
  /** Replica nodes whose data directory can be made full. */
  diskNodes: readonly string[];
}

/** The request timeout the campaign gives engines; link cuts are drawn around it. */
export const REQUEST_TIMEOUT_MS = 1500;

const pick = <T>(random: () => number, items: readonly T[]): T => {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new Error('nothing to pick from');
  return item;
};
const between = (random: () => number, low: number, high: number) =>
  Math.round(low + random() * (high - low));

/** One or two faults at random moments of a window of `windowMs`. */
export function drawFaults(
  random: () => number,
  topology: Topology,
  windowMs: number,
  kinds = FAULT_KINDS,
): Fault[] {
  const count = random() < 0.35 ? 2 : 1;
  const faults: Fault[] = [];
  for (let i = 0; i < count; i++) {
    const kind = pick(random, kinds);
    const atMs = between(random, 300, windowMs * 0.6);
    faults.push(fault(random, topology, kind, atMs));
  }
  return faults.sort((a, b) => a.atMs - b.atMs);
}

function fault(random: () => number, topology: Topology, kind: FaultKind, atMs: number): Fault {
  switch (kind) {
    case 'kill-replica-server':
      return { kind, node: pick(random, topology.replicaOnly), atMs, forMs: between(random, 200, 3000) };
    case 'kill-engine-host':
      return { kind, node: topology.engineHost, atMs, forMs: between(random, 200, 3000) };
    case 'kill-engine-process':
      return { kind, node: topology.engineNode, atMs, forMs: between(random, 100, 2000) };
    case 'cut-link-short':
      // Shorter than the request timeout: nothing should be fenced, I/O only pauses.
      return {
        kind,
        node: pick(random, [...topology.replicaOnly, topology.engineHost, topology.engineNode]),
        atMs,
        forMs: between(random, 200, REQUEST_TIMEOUT_MS * 0.6),
      };
    case 'cut-link-long':
      return {
        kind,
        node: pick(random, [...topology.replicaOnly, topology.engineHost, topology.engineNode]),
        atMs,
        forMs: between(random, REQUEST_TIMEOUT_MS * 1.5, REQUEST_TIMEOUT_MS * 4),
      };
    case 'disk-full':
      return { kind, node: pick(random, topology.diskNodes), atMs, forMs: between(random, 500, 4000) };
  }
}
