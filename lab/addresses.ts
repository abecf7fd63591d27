/**
 * The lab's address plan, all inside 198.18.0.0/15 (RFC 2544's range for network tests). A
 * simulated network claims one subnet number s (1..254) and with it:
 *   198.18.s.0/24   the nodes: the bridge (host side) at .1, node i at .(11 + i)
 *   198.19.s.0/26   ClusterIPs; the `kubernetes` Service takes .1
 *   198.19.s.64/27  pods of node 0, .96/27 node 1, ... (six nodes, 29 pods each)
 * so several labs and test clusters on one machine never overlap.
 */

export const MAX_PODS_PER_NODE = 29;
export const MAX_REAL_NODES = 6;

export interface ClusterAddresses {
  /** Every pod and Service address of this network. */
  clusterCidr: string;
  serviceCidr: string;
  /** One pod range per node, in node order. */
  podCidrs: string[];
}

export function clusterAddresses(subnet: number, nodes: number): ClusterAddresses {
  if (!Number.isInteger(subnet) || subnet < 1 || subnet > 254)
    throw new Error(`a simulated network's subnet number is 1..254, not ${subnet}`);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_REAL_NODES)
    throw new Error(`a cluster of real nodes has 1 to ${MAX_REAL_NODES} nodes, not ${nodes}`);
  return {
    clusterCidr: `198.19.${subnet}.0/24`,
    serviceCidr: `198.19.${subnet}.0/26`,
    podCidrs: Array.from({ length: nodes }, (_, i) => `198.19.${subnet}.${64 + 32 * i}/27`),
  };
}

/** The first host address of an IPv4 CIDR: 198.19.3.0/26 → 198.19.3.1. */
export function firstAddress(cidr: string): string {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!match) throw new Error(`"${cidr}" is not an IPv4 CIDR such as 198.19.1.0/26`);
  const [a, b, c, d, bits] = match.slice(1).map(Number) as [number, number, number, number, number];
  if ([a, b, c, d].some((octet) => octet > 255) || bits > 30)
    throw new Error(`"${cidr}" is not an IPv4 CIDR with room for hosts`);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  const network = ((((a << 24) | (b << 16) | (c << 8) | d) >>> 0) & mask) >>> 0;
  const first = network + 1;
  return [first >>> 24, (first >>> 16) & 255, (first >>> 8) & 255, first & 255].join('.');
}
