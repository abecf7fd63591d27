/**
 * The share-manager settings a ReadWriteMany Filesystem volume keeps in `spec.share`: taken from
 * the StorageClass once, at CreateVolume, because the controller places and replaces share
 * managers for the volume's whole life while the class may be edited or deleted.
 *
 * allowedTopologies is read from the class itself (through the claim external-provisioner names
 * with --extra-create-metadata), not from the request's requisite topology: without
 * allowedTopologies the provisioner fills requisite with every node it knows at that moment, and
 * with WaitForFirstConsumer with the first consumer's node, so persisting requisite would freeze
 * the share manager onto the nodes of the day, or onto one pod's node.
 */
import type { V1TopologySelectorTerm } from '@kubernetes/client-node';
import type { ShareSpec } from '../../lib/api/volume.js';
import type { TandemClassParameters } from '../../lib/params/storage-class.js';
import { TOPOLOGY_NODE_KEY } from '../csi/node-topology.js';

/**
 * The nodes a class's allowedTopologies admit: terms are ORed, the expressions of one term ANDed
 * (the webhook admits only Tandem's node key, so each expression is a set of node names).
 * Undefined when the class sets none (any node).
 */
export function allowedTopologyNodes(
  terms: readonly V1TopologySelectorTerm[] | undefined,
): string[] | undefined {
  if (terms === undefined || terms.length === 0) return undefined;
  const nodes = new Set<string>();
  for (const term of terms) {
    const expressions = term.matchLabelExpressions ?? [];
    if (expressions.some((e) => e.key !== TOPOLOGY_NODE_KEY)) continue; // matches no Tandem node
    let admitted: string[] | undefined;
    for (const e of expressions)
      admitted = admitted === undefined ? [...e.values] : admitted.filter((n) => e.values.includes(n));
    for (const node of admitted ?? []) nodes.add(node);
  }
  return [...nodes].sort();
}

export function shareSpecFor(
  parameters: TandemClassParameters,
  allowedNodes: string[] | undefined,
): ShareSpec {
  return {
    nfsOptions: parameters.nfsOptions,
    fastFailover: parameters.fastFailover,
    ...(Object.keys(parameters.shareManagerNodeSelector).length > 0
      ? { nodeSelector: { ...parameters.shareManagerNodeSelector } }
      : {}),
    ...(parameters.shareManagerTolerations.length > 0
      ? { tolerations: parameters.shareManagerTolerations.map((t) => ({ ...t })) }
      : {}),
    ...(allowedNodes === undefined ? {} : { nodes: allowedNodes }),
  };
}
