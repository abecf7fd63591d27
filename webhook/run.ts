import type { KubeConfig } from '@kubernetes/client-node';
import { type Logger, silentLogger } from '../lib/log.js';
import { createRegistry } from '../lib/metrics.js';
import type { KeyPair } from '../lib/pki.js';
import { CertificateManager } from './certificates.js';
import { CachedClusterView } from './cluster-cache.js';
import { startWebhookServer, type WebhookServer } from './server.js';

export interface WebhookOptions {
  kc: KubeConfig;
  host: string;
  port: number;
  namespace: string;
  serviceName: string;
  secretName: string;
  validatingConfiguration: string;
  mutatingConfiguration: string;
  /** Extra IP SANs (tests and the lab reach the webhook by address, not by Service name). */
  ipAddresses?: string[];
  servingValidForMs?: number;
  certificateCheckIntervalMs?: number;
  logger?: Logger;
}

export interface RunningWebhook {
  port: number;
  certificates: CertificateManager;
  view: CachedClusterView;
  server: WebhookServer;
  stop(): Promise<void>;
}

/** The DNS names the apiserver uses to reach a Service-backed webhook. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}

/**
 * `tandem webhook`: caches start syncing, the certificate is loaded or issued
 * and its CA published into both webhook configurations, then HTTPS serves.
 * /readyz turns ready once the caches have synced.
 */
export async function runWebhook(options: WebhookOptions): Promise<RunningWebhook> {
  const logger = options.logger ?? silentLogger();
  const registry = createRegistry('webhook');
  const view = new CachedClusterView(options.kc, logger);
  view.start();

  let server: WebhookServer | undefined;
  let latest: KeyPair | undefined;
  const certificates = new CertificateManager({
    kc: options.kc,
    namespace: options.namespace,
    secretName: options.secretName,
    dnsNames: serviceDnsNames(options.serviceName, options.namespace),
    ...(options.ipAddresses ? { ipAddresses: options.ipAddresses } : {}),
    validatingConfigurations: [options.validatingConfiguration],
    mutatingConfigurations: [options.mutatingConfiguration],
    ...(options.servingValidForMs ? { servingValidForMs: options.servingValidForMs } : {}),
    ...(options.certificateCheckIntervalMs ? { checkIntervalMs: options.certificateCheckIntervalMs } : {}),
    onServingCertificate: (pair) => {
      latest = pair;
      server?.useCertificate(pair);
    },
    logger,
  });
  const certificate = await certificates.start();
  server = await startWebhookServer({
    host: options.host,
    port: options.port,
    certificate: latest ?? certificate,
    view,
    registry,
    ready: () => view.ready,
    logger,
  });
  logger.info({ address: `${options.host}:${server.port}` }, 'webhook serving');
  const started = server;
  return {
    port: started.port,
    certificates,
    view,
    server: started,
    stop: async () => {
      certificates.stop();
      await started.close();
      await view.stop();
    },
  };
}
