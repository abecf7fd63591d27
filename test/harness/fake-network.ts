/**
 * Engines and FakeReplicas wired together for unit tests: a Connector per engine (HELLO refuses
 * an older epoch and adopts a newer one, like the real replica), one engine cut off from one
 * replica, and a ReplicaSet + Engine pair built on it.
 */
import { Engine } from '../../driver/engine/engine.js';
import type { Membership, MembershipStore, ReplicaMember } from '../../driver/engine/membership.js';
import { type Connector, ReplicaSet } from '../../driver/engine/replica-set.js';
import { ReplicaError } from '../../driver/replica/client.js';
import { silentLogger } from '../../lib/log.js';
import { FakeLink, FakeReplica } from './fake-replica.js';

export { FakeLink, type FakeOp, FakeReplica, type Fault, PAGE } from './fake-replica.js';

/** Replicas and the engines' view of them. */
export class FakeNetwork {
  readonly replicas = new Map<string, FakeReplica>();
  readonly #cut = new Set<string>();
  /** Connection attempts, by engine and node, successful or not. */
  readonly connects: { engine: string; node: string; epoch: bigint }[] = [];

  constructor(readonly size: number) {}

  add(node: string, epoch = 0n): FakeReplica {
    const replica = new FakeReplica(node, this.size, epoch);
    this.replicas.set(node, replica);
    return replica;
  }

  replica(node: string): FakeReplica {
    const r = this.replicas.get(node);
    if (r === undefined) throw new Error(`no fake replica on ${node}`);
    return r;
  }

  /** A record listing every replica ReadWrite, no engine. */
  record(epoch = 1): Membership {
    return {
      epoch,
      sizeBytes: this.size,
      replicas: [...this.replicas.keys()].map((node) => this.member(node)),
      engines: [],
    };
  }

  member(node: string, mode: ReplicaMember['mode'] = 'ReadWrite'): ReplicaMember {
    return { node, address: `fake://${node}`, mode };
  }

  /** `engine` can no longer reach `node`: its links drop, its connects fail. */
  cut(engine: string, node: string): void {
    this.#cut.add(`${engine}\n${node}`);
    for (const link of [...this.replica(node).links]) if (link.engine === engine) link.disconnect('cut off');
  }

  heal(engine: string, node: string): void {
    this.#cut.delete(`${engine}\n${node}`);
  }

  connector(engine: string, options: { timeoutMs?: number } = {}): Connector {
    return async (member, epoch) => {
      this.connects.push({ engine, node: member.node, epoch });
      const replica = this.replica(member.node);
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (replica.down || this.#cut.has(`${engine}\n${member.node}`))
        throw new ReplicaError('DISCONNECTED', `fake://${member.node}: connection refused`);
      // HELLO: an older epoch is refused, a newer one adopted.
      await replica.admit(epoch);
      return new FakeLink(replica, engine, epoch, options.timeoutMs);
    };
  }

  /** True when every replica holds the same bytes over the whole volume. */
  identical(nodes: string[] = [...this.replicas.keys()], step = 1024 * 1024): boolean {
    const [first, ...rest] = nodes.map((n) => this.replica(n));
    if (first === undefined) return true;
    for (let at = 0; at < this.size; at += step) {
      const n = Math.min(step, this.size - at);
      const want = first.peek(at, n);
      if (rest.some((r) => !r.peek(at, n).equals(want))) return false;
    }
    return true;
  }
}

export interface FakeEngine {
  id: string;
  set: ReplicaSet;
  engine: Engine;
}

/** A ReplicaSet and Engine on `node` reaching the network's replicas as engine `id`. */
export function fakeEngine(
  network: FakeNetwork,
  store: MembershipStore,
  id: string,
  node: string,
  options: { timeoutMs?: number } = {},
): FakeEngine {
  const log = silentLogger();
  const set = new ReplicaSet({
    engineId: id,
    localNode: node,
    store,
    connect: network.connector(id, options),
    log,
  });
  return { id, set, engine: new Engine({ volume: 'vol', set, log }) };
}
