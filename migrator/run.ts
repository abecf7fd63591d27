/**
 * `tandem migrator`: every replica of the Deployment campaigns for the Lease `tandem-migrator`;
 * the leader runs the reconciler, the others wait to take over. Deciding twice is harmless (the
 * decision is written once, with optimistic concurrency, and carrying it out is idempotent), so
 * the Lease is about not doing the work twice, not about safety.
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { SecretCredentialSource } from '../driver/dataplane/credentials.js';
import { serveAdmin } from '../lib/http-admin.js';
import { loadKubeConfig } from '../lib/kube/client.js';
import { EventRecorder } from '../lib/kube/events.js';
import { defaultIdentity, LeaderElection } from '../lib/kube/leader-election.js';
import { createLogger, type LogLevel } from '../lib/log.js';
import { untilStopSignal } from '../lib/signals.js';
import { ReplicaFencer } from './fence.js';
import { MigratorMetrics } from './metrics.js';
import { MigrationReconciler } from './reconciler.js';

export const MIGRATOR_LEASE = 'tandem-migrator';

export interface MigratorOptions {
  kubeconfig?: string;
  /** A loaded config instead of a file (tests and the lab). */
  kc?: KubeConfig;
  namespace: string;
  migrationTimeoutMs: number;
  resyncIntervalMs: number;
  metricsAddress: { host: string; port: number };
  logLevel: LogLevel;
  /** Resolves to stop (default: SIGTERM / SIGINT). */
  until?: Promise<unknown>;
}

/** Runs until a stop signal or a lost Lease; resolves with the process exit code. */
export async function runMigrator(options: MigratorOptions): Promise<number> {
  const log = createLogger('migrator', options.logLevel);
  const kc = options.kc ?? loadKubeConfig(options.kubeconfig);
  const identity = defaultIdentity();
  const metrics = new MigratorMetrics();
  const events = new EventRecorder({ kc, log, reportingInstance: `tandem-migrator-${identity}` });
  const credentials = new SecretCredentialSource(kc.makeApiClient(CoreV1Api), options.namespace);
  const fencer = new ReplicaFencer({
    credential: (volume) => credentials.read(volume),
    identity: `migrator/${identity}`,
    log,
  });
  const admin = await serveAdmin(metrics.registry, options.metricsAddress.host, options.metricsAddress.port);
  const election = new LeaderElection({
    kc,
    namespace: options.namespace,
    name: MIGRATOR_LEASE,
    identity,
    log,
  });
  const elected = election.run({
    onStartedLeading: async (signal) => {
      metrics.leader.set(1);
      const reconciler = new MigrationReconciler({
        kc,
        namespace: options.namespace,
        migrationTimeoutMs: options.migrationTimeoutMs,
        resyncIntervalMs: options.resyncIntervalMs,
        fencer,
        metrics,
        events,
        log,
      });
      await reconciler.run(signal);
    },
    onStoppedLeading: () => metrics.leader.set(0),
  });
  log.info({ identity, metricsPort: admin.port }, 'migrator started');
  const end = await Promise.race([
    (options.until ?? untilStopSignal()).then(() => 'stopped' as const),
    elected.then((how) => (how === 'lost' ? ('leadership lost' as const) : ('stopped' as const))),
  ]);
  log.info({ reason: end }, 'shutting down');
  await election.stop();
  await events.flush();
  await admin.close();
  // A lost Lease ends the process (like client-go's controllers): the restarted pod campaigns afresh.
  return end === 'leadership lost' ? 1 : 0;
}
