import { status } from '@grpc/grpc-js';
import { CsiError } from '../csi/errors.js';

/** A CSI Topology message as @grpc/proto-loader decodes it (keepCase). */
export interface CsiTopology {
  segments: Record<string, string>;
}

/** A CSI TopologyRequirement; proto-loader gives [] for absent lists and null for an absent message. */
export interface CsiTopologyRequirement {
  requisite?: CsiTopology[] | null;
  preferred?: CsiTopology[] | null;
}

/** What placement needs to know about one node; gathered by the caller from Nodes and replica servers. */
export interface NodeInfo {
  name: string;
  /** Space the node's replica server can still commit to new replicas. */
  freeBytes: number;
  /** False for cordoned, not-ready or draining nodes. */
  schedulable: boolean;
  /** Topology labels, e.g. { 'topology.csi.tandem.dev/node': 'node-a' }. */
  segments: Record<string, string>;
}

export interface PlacementRequest {
  replicas: number;
  nodes: readonly NodeInfo[];
  sizeBytes: number;
  topology?: CsiTopologyRequirement | null;
  /**
   * Nodes that already hold a replica of this volume (a retried CreateVolume,
   * or a reconciler topping up a degraded volume). They are kept as they are:
   * they already hold the space, so checking their free space again would
   * refuse a retry that the first attempt accepted.
   */
  existing?: readonly string[];
}

/** Why a node was passed over; used only to explain a refusal. */
type Rejection = 'unschedulable' | 'outside-topology' | 'too-small';

/** Placement impossible: RESOURCE_EXHAUSTED, so external-provisioner retries with backoff (and reschedules under WaitForFirstConsumer). */
export class PlacementError extends CsiError {
  constructor(
    message: string,
    /** How many more nodes were needed, and how many qualified. */
    readonly needed: number,
    readonly eligible: readonly string[],
  ) {
    super(status.RESOURCE_EXHAUSTED, message);
    this.name = 'PlacementError';
  }
}

/** A node is inside a term when it carries every segment of the term with the same value. */
function matches(node: NodeInfo, term: CsiTopology): boolean {
  return Object.entries(term.segments ?? {}).every(([key, value]) => node.segments[key] === value);
}

/** Index of the first preferred term the node is in; nodes in none sort after all others. */
function preferenceRank(node: NodeInfo, preferred: readonly CsiTopology[]): number {
  const index = preferred.findIndex((term) => matches(node, term));
  return index < 0 ? preferred.length : index;
}

/**
 * Chooses the nodes for a volume's replicas, one per node, so that losing a
 * node loses at most one copy. The result lists the existing replicas first,
 * then the new ones in order of preference: CSI asks that the first preferred
 * topology hold the volume, and the caller puts the engine (for a volume not
 * yet attached) with the first replica, so the local read path is used.
 *
 * Order among candidates: the first preferred term they are in, then most
 * free space (spreads usage), then name (the same input always gives the same
 * answer, which keeps retries and tests stable).
 *
 * Every existing replica is kept, even beyond `replicas`: dropping a copy that
 * holds data is a reconciler's decision, never a side effect of placement.
 */
export function placeReplicas(request: PlacementRequest): string[] {
  const { replicas, sizeBytes } = request;
  if (!Number.isInteger(replicas) || replicas < 1)
    throw new Error(`placeReplicas: replicas must be a positive whole number, got ${replicas}`);
  const requisite = request.topology?.requisite ?? [];
  const preferred = request.topology?.preferred ?? [];
  const existing = [...new Set(request.existing ?? [])];
  const taken = new Set(existing);

  // The first entry of a name wins, so a duplicated node cannot hold two replicas.
  const nodes: NodeInfo[] = [];
  const seen = new Set<string>();
  for (const node of request.nodes) {
    if (seen.has(node.name)) continue;
    seen.add(node.name);
    nodes.push(node);
  }

  const rejected = new Map<string, Rejection>();
  const candidates: NodeInfo[] = [];
  for (const node of nodes) {
    if (taken.has(node.name)) continue;
    if (!node.schedulable) rejected.set(node.name, 'unschedulable');
    else if (requisite.length > 0 && !requisite.some((term) => matches(node, term)))
      rejected.set(node.name, 'outside-topology');
    else if (node.freeBytes < sizeBytes) rejected.set(node.name, 'too-small');
    else candidates.push(node);
  }

  candidates.sort(
    (a, b) =>
      preferenceRank(a, preferred) - preferenceRank(b, preferred) ||
      b.freeBytes - a.freeBytes ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );

  const missing = Math.max(0, replicas - existing.length);
  if (candidates.length < missing) {
    throw new PlacementError(
      refusal(request, existing, candidates, nodes, rejected, missing, requisite),
      missing,
      candidates.map((n) => n.name),
    );
  }
  return [...existing, ...candidates.slice(0, missing).map((n) => n.name)];
}

// ---------------------------------------------------------------------------
// The refusal message: it reaches the user as a PVC event, so it says what was
// needed, what each node lacked, and what to change.

const LISTED_NODES = 12;

/** 10 GiB, 4.5 GiB, 512 MiB: the way sizes are written in PVCs. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const rounded = Math.floor(value * 10) / 10;
  return `${Number.isInteger(rounded) ? rounded : rounded.toFixed(1)} ${units[unit]}`;
}

function formatTerm(term: CsiTopology): string {
  const pairs = Object.entries(term.segments ?? {}).map(([k, v]) => `${k}=${v}`);
  return pairs.length === 0 ? '{any}' : `{${pairs.join(', ')}}`;
}

function describe(node: NodeInfo, why: Rejection | undefined): string {
  const free = `${formatBytes(node.freeBytes)} free`;
  if (why === 'unschedulable') return `${node.name} (not schedulable, ${free})`;
  if (why === 'outside-topology') return `${node.name} (outside the requisite topology, ${free})`;
  return `${node.name} (${free})`;
}

function listNodes(described: string[]): string {
  if (described.length <= LISTED_NODES) return described.join(', ');
  return `${described.slice(0, LISTED_NODES).join(', ')}, and ${described.length - LISTED_NODES} more`;
}

function refusal(
  request: PlacementRequest,
  existing: readonly string[],
  candidates: readonly NodeInfo[],
  nodes: readonly NodeInfo[],
  rejected: ReadonlyMap<string, Rejection>,
  missing: number,
  requisite: readonly CsiTopology[],
): string {
  const size = formatBytes(request.sizeBytes);
  const where =
    requisite.length > 0 ? ` in the requisite topology (${requisite.map(formatTerm).join(' or ')})` : '';
  const placed =
    existing.length > 0
      ? `${existing.length} of ${request.replicas} replicas already placed (${existing.join(', ')}); `
      : '';
  const need = `need ${missing} ${existing.length > 0 ? 'more ' : ''}schedulable node${missing === 1 ? '' : 's'} with ≥ ${size} free${where}, one replica per node`;
  const have = `have ${candidates.length}${candidates.length > 0 ? `: ${listNodes(candidates.map((n) => describe(n, undefined)))}` : ''}`;
  const others = nodes.filter((n) => rejected.has(n.name)).map((n) => describe(n, rejected.get(n.name)));
  const notEligible = others.length > 0 ? `; not eligible: ${listNodes(others)}` : '';
  const none = nodes.length === 0 ? ' (no nodes run a Tandem replica server)' : '';
  return (
    `cannot place ${request.replicas} replica${request.replicas === 1 ? '' : 's'} of ${size}: ${placed}${need}; ${have}${none}${notEligible}. ` +
    'Free space or add nodes, uncordon nodes, widen the allowed topology, or use a class with a lower numberOfReplicas.'
  );
}
