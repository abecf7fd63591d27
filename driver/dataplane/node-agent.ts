/**
 * The Kubernetes side of a node's data plane (`tandem dataplane --reconcile`, the DaemonSet):
 * the node's registration Lease, and the reconciler that makes the node hold the replicas and run
 * the engines the Volume resources ask of it. Everything it acts on comes from the API and the
 * disk, so a restarted data plane converges to the same state.
 */
import { CoordinationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Volume } from '../../lib/api/volume.js';
import { type Cache, keepWatching } from '../../lib/kube/informer.js';
import { VolumeClient } from '../../lib/kube/volumes.js';
import type { Logger } from '../../lib/log.js';
import { SecretCredentialSource } from './credentials.js';
import { KubeVolumeWriter } from './finalizers.js';
import { NodeRegistration } from './node-registration.js';
import {
  DataplaneReconciler,
  type EngineRunner,
  type ReconcilerOptions,
  type ReplicaGrower,
} from './reconciler.js';

export interface NodeAgentOptions {
  kc: KubeConfig;
  node: string;
  namespace: string;
  dataDir: string;
  engineSocketDir: string;
  /** host:port other nodes reach this node's replica server at. */
  advertiseAddress: string;
  pool: EngineRunner;
  /** The live replica server's registry: replicas it has open are grown through it. */
  replicas: ReplicaGrower;
  log: Logger;
  /** Extra reconciler settings (tests shorten the intervals). */
  tuning?: Partial<
    Pick<ReconcilerOptions, 'resyncIntervalMs' | 'engineRequestTimeoutMs' | 'engineRebuildIntervalMs'>
  >;
  /** How often the node's registration Lease is renewed (default 10 s). */
  renewIntervalMs?: number;
  /** The registration Lease's duration (default 40 s); past it the controller treats the node as lost. */
  leaseDurationSeconds?: number;
}

export interface NodeAgent {
  reconciler: DataplaneReconciler;
  stop(): Promise<void>;
}

export async function startNodeAgent(options: NodeAgentOptions): Promise<NodeAgent> {
  const { kc, log } = options;
  const registration = new NodeRegistration({
    api: kc.makeApiClient(CoordinationV1Api),
    namespace: options.namespace,
    node: options.node,
    address: options.advertiseAddress,
    dataDir: options.dataDir,
    log,
    ...(options.renewIntervalMs === undefined ? {} : { renewIntervalMs: options.renewIntervalMs }),
    ...(options.leaseDurationSeconds === undefined
      ? {}
      : { leaseDurationSeconds: options.leaseDurationSeconds }),
  });
  await registration.start();
  const informer: Cache<Volume> = new VolumeClient(kc).informer();
  const watching = await keepWatching(informer, { name: 'volumes', logger: log });
  const reconciler = new DataplaneReconciler({
    node: options.node,
    dataDir: options.dataDir,
    runDir: options.engineSocketDir,
    volumes: informer,
    writer: new KubeVolumeWriter(kc),
    pool: options.pool,
    replicas: options.replicas,
    credentials: new SecretCredentialSource(kc.makeApiClient(CoreV1Api), options.namespace),
    log,
    ...options.tuning,
  });
  await reconciler.start();
  return {
    reconciler,
    stop: async () => {
      await reconciler.stop();
      await watching.stop();
      await registration.stop();
    },
  };
}
