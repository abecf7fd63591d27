import { Command, Option } from '@commander-js/extra-typings';
import { parseHostPort } from '../../lib/config.js';
import { kubeconfigOption, logLevelOption } from '../options.js';
import { notYetAvailable } from './not-yet.js';

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
      new Option('--namespace <ns>', 'namespace of that Service')
        .default('tandem-system')
        .env('POD_NAMESPACE'),
    )
    .addOption(kubeconfigOption())
    .addOption(logLevelOption())
    .action(notYetAvailable('webhook', 3));
}
