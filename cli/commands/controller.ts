import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { KubeControllerCluster } from '../../driver/controller/cluster.js';
import { runLeaderDuties } from '../../driver/controller/leader-duties.js';
import { controllerHandlers } from '../../driver/controller/service.js';
import { KubeShareCluster } from '../../driver/controller/share-cluster.js';
import { ShareControllerMetrics } from '../../driver/controller/share-metrics.js';
import { ShareReconciler } from '../../driver/controller/share-reconciler.js';
import { identityHandlers } from '../../driver/csi/identity.js';
import { csiServices } from '../../driver/csi/proto.js';
import { CsiServer } from '../../driver/csi/server.js';
import { durationIn } from '../../lib/config.js';
import { serveAdmin } from '../../lib/http-admin.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { EventRecorder } from '../../lib/kube/events.js';
import { defaultIdentity, LeaderElection } from '../../lib/kube/leader-election.js';
import { createLogger } from '../../lib/log.js';
import { createRegistry } from '../../lib/metrics.js';
import { parseNodeSelector, parseTolerations, type Toleration } from '../../lib/params/storage-class.js';
import { canConnect } from '../../lib/readiness.js';
import { untilStopSignal } from '../../lib/signals.js';
import {
  csiEndpointOption,
  kubeconfigOption,
  listParser,
  logLevelOption,
  metricsAddressOption,
  namespaceOption,
} from '../options.js';

export function controllerCommand() {
  return new Command('controller')
    .description(
      'CSI controller service (leader-elected by a Lease): provisions, publishes and expands volumes',
    )
    .addOption(csiEndpointOption())
    .addOption(kubeconfigOption())
    .addOption(namespaceOption('credential Secrets, node Leases, the leader Lease'))
    .addOption(
      new Option(
        '--engine-wait <duration>',
        'how long ControllerPublishVolume waits for the engine before answering UNAVAILABLE (the attacher retries)',
      )
        .argParser(durationIn(1000, 600_000))
        .default(60_000, '60s'),
    )
    .addOption(
      new Option(
        '--node-check-interval <duration>',
        'how often the leader looks for nodes whose registration Lease expired (NodeLost events on the claims of their replicas)',
      )
        .argParser(durationIn(500, 600_000))
        .default(10_000, '10s')
        .env('TANDEM_NODE_CHECK_INTERVAL'),
    )
    .addOption(
      new Option(
        '--share-manager-image <image>',
        "image of the share-manager Pods of RWX Filesystem volumes (default: the controller's own image and pull policy, read from its Pod, so an image override of the install applies to them too)",
      ).env('TANDEM_SHARE_MANAGER_IMAGE'),
    )
    .addOption(
      new Option(
        '--pod-name <name>',
        "this controller's Pod, whose image and pull policy the share managers get unless --share-manager-image is given",
      ).env('POD_NAME'),
    )
    .addOption(
      new Option('--share-manager-service-account <name>', "the share-manager Pods' ServiceAccount")
        .default('tandem-share-manager')
        .env('TANDEM_SHARE_MANAGER_SERVICE_ACCOUNT'),
    )
    .addOption(
      new Option(
        '--share-manager-node-selector <key:value;...>',
        "cluster-wide node selector of share managers, under each class's shareManagerNodeSelector",
      )
        .argParser(listParser('--share-manager-node-selector', parseNodeSelector))
        .default({} as Record<string, string>, 'none')
        .env('TANDEM_SHARE_MANAGER_NODE_SELECTOR'),
    )
    .addOption(
      new Option(
        '--share-manager-tolerations <key=value:Effect;...>',
        "cluster-wide tolerations of share managers, beside each class's shareManagerTolerations",
      )
        .argParser(listParser('--share-manager-tolerations', parseTolerations))
        .default([] as Toleration[], 'none')
        .env('TANDEM_SHARE_MANAGER_TOLERATIONS'),
    )
    .addOption(
      new Option(
        '--share-resync <duration>',
        'how often the leader checks every share manager (heartbeats expire without any Volume changing)',
      )
        .argParser(durationIn(200, 60_000))
        .default(2_000, '2s')
        .env('TANDEM_SHARE_RESYNC'),
    )
    .addOption(metricsAddressOption('0.0.0.0:9501'))
    .addOption(logLevelOption())
    .action(async (options) => {
      const log = createLogger('controller', options.logLevel);
      const kc = loadKubeConfig(options.kubeconfig);
      const cluster = new KubeControllerCluster(kc, options.namespace);
      const shares = new KubeShareCluster(kc, options.namespace);
      const shareImage =
        options.shareManagerImage === undefined
          ? await ownImage(kc, options.namespace, options.podName, 'controller')
          : { image: options.shareManagerImage };
      const events = new EventRecorder({ kc, log });
      const services = csiServices();
      // Ready when the API answers the reads every call starts with.
      const ready = async (): Promise<true> => {
        await cluster.listNodes();
        return true;
      };
      const server = new CsiServer({
        endpoint: options.csiEndpoint,
        logger: log,
        services: [
          {
            definition: services.Identity,
            handlers: identityHandlers({ ready }),
          },
          {
            definition: services.Controller,
            handlers: controllerHandlers({ cluster, events, shares, engineWaitMs: options.engineWait }),
          },
        ],
      });
      // What the livenessprobe sidecar checked: Probe's readiness, through the sidecars' socket.
      const healthy = async (): Promise<true | string> => {
        await ready();
        return (await canConnect({ path: server.path }))
          ? true
          : `the CSI socket ${server.path} does not accept connections`;
      };
      const registry = createRegistry('controller');
      const shareMetrics = new ShareControllerMetrics(registry);
      const metrics = await serveAdmin(
        registry,
        options.metricsAddress.host,
        options.metricsAddress.port,
        {},
        { healthy, logger: log },
      );
      await server.start();
      const election = new LeaderElection({
        kc,
        namespace: options.namespace,
        name: 'tandem-controller',
        identity: defaultIdentity(),
        log,
      });
      const elected = election.run({
        onStartedLeading: (signal) =>
          runLeaderDuties(
            {
              kc,
              cluster,
              events,
              log,
              nodeCheckIntervalMs: options.nodeCheckInterval,
              shares: {
                resyncMs: options.shareResync,
                reconciler: new ShareReconciler({
                  cluster,
                  shares,
                  events,
                  log,
                  engineWaitMs: options.engineWait,
                  metrics: shareMetrics,
                  pod: {
                    namespace: options.namespace,
                    ...shareImage,
                    serviceAccountName: options.shareManagerServiceAccount,
                    defaults: {
                      nodeSelector: options.shareManagerNodeSelector,
                      tolerations: options.shareManagerTolerations,
                    },
                  },
                }),
              },
            },
            signal,
          ),
      });
      const end = await Promise.race([
        untilStopSignal(),
        elected.then((how) => (how === 'lost' ? 'leadership lost' : 'stopped')),
      ]);
      log.info({ reason: end }, 'shutting down');
      await election.stop();
      await server.stop();
      await events.flush();
      await metrics.close();
      // A lost Lease ends the process (like client-go's controllers): the restarted pod campaigns afresh.
      if (end === 'leadership lost') process.exitCode = 1;
    });
}

/**
 * The image and pull policy of this Pod's `container`: what share managers run, so whatever
 * changed the install's image (kustomize, a mirror, a digest pin) changes theirs too.
 */
async function ownImage(
  kc: KubeConfig,
  namespace: string,
  podName: string | undefined,
  container: string,
): Promise<{ image: string; imagePullPolicy?: string }> {
  if (!podName)
    throw new InvalidArgumentError(
      'give --share-manager-image, or --pod-name (POD_NAME) of the Pod the controller runs in, whose image it then uses',
    );
  const pod = await kc.makeApiClient(CoreV1Api).readNamespacedPod({ name: podName, namespace });
  const own = pod.spec?.containers.find((c) => c.name === container);
  if (!own?.image) throw new Error(`Pod ${namespace}/${podName} has no container ${container} with an image`);
  return { image: own.image, ...(own.imagePullPolicy ? { imagePullPolicy: own.imagePullPolicy } : {}) };
}
