import { isIP } from 'node:net';
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { durationIn, parseHostPort } from '../../lib/config.js';
import { loadKubeConfig } from '../../lib/kube/client.js';
import { createLogger } from '../../lib/log.js';
import { untilStopSignal } from '../../lib/signals.js';
import { runWebhook } from '../../webhook/run.js';
import { kubeconfigOption, logLevelOption } from '../options.js';

const ipList = (value: string): string[] => {
  const ips = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = ips.filter((ip) => isIP(ip) === 0);
  if (bad.length > 0)
    throw new InvalidArgumentError(
      `${bad.join(', ')} is not an IP address; give a comma-separated list of IPs.`,
    );
  return ips;
};

export function webhookCommand() {
  return new Command('webhook')
    .description('admission webhook (HTTPS): refuses unsafe volume, class, pod and VM combinations')
    .addOption(
      new Option('--listen <host:port>', 'HTTPS address (also serves /metrics, /healthz, /readyz)')
        .argParser(parseHostPort)
        .default(parseHostPort('0.0.0.0:9443'), '0.0.0.0:9443')
        .env('TANDEM_WEBHOOK_LISTEN'),
    )
    .addOption(
      new Option('--service-name <name>', 'Service in front of the webhook (certificate SANs)').default(
        'tandem-webhook',
      ),
    )
    .addOption(
      new Option('--namespace <ns>', 'namespace of that Service and of the certificate Secret')
        .default('tandem-system')
        .env('POD_NAMESPACE'),
    )
    .addOption(
      new Option('--secret-name <name>', 'Secret keeping the CA and serving certificate').default(
        'tandem-webhook-tls',
      ),
    )
    .addOption(
      new Option(
        '--validating-configuration <name>',
        'ValidatingWebhookConfiguration to publish the CA into',
      ).default('tandem-validating'),
    )
    .addOption(
      new Option(
        '--mutating-configuration <name>',
        'MutatingWebhookConfiguration to publish the CA into',
      ).default('tandem-mutating'),
    )
    .addOption(
      new Option(
        '--extra-ip-sans <ips>',
        'extra IP addresses in the serving certificate, comma-separated',
      ).argParser(ipList),
    )
    .addOption(
      new Option(
        '--certificate-validity <duration>',
        'lifetime of a serving certificate; renewed when a third remains',
      )
        .argParser(durationIn(60_000, 5 * 365 * 24 * 3_600_000))
        .default(365 * 24 * 3_600_000, '8760h'),
    )
    .addOption(kubeconfigOption())
    .addOption(logLevelOption())
    .action(async (options) => {
      const logger = createLogger('webhook', options.logLevel);
      const webhook = await runWebhook({
        kc: loadKubeConfig(options.kubeconfig),
        host: options.listen.host,
        port: options.listen.port,
        namespace: options.namespace,
        serviceName: options.serviceName,
        secretName: options.secretName,
        validatingConfiguration: options.validatingConfiguration,
        mutatingConfiguration: options.mutatingConfiguration,
        ...(options.extraIpSans ? { ipAddresses: options.extraIpSans } : {}),
        servingValidForMs: options.certificateValidity,
        // Check often enough that a certificate is never within a tenth of its life of expiring unnoticed.
        certificateCheckIntervalMs: Math.min(
          3_600_000,
          Math.max(1_000, Math.floor(options.certificateValidity / 10)),
        ),
        logger,
      });
      await untilStopSignal();
      logger.info('shutting down');
      await webhook.stop();
    });
}
