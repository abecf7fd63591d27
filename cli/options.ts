import { InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { DEFAULT_ENGINE_SOCKET_DIR } from '../driver/csi/node-topology.js';
import { CREDENTIAL_NAMESPACE } from '../driver/dataplane/credentials.js';
import { checkVolumeName } from '../driver/replica/metadata.js';
import { nodeName, oneOf, parseHostPort, unixSocketPath } from '../lib/config.js';
import { LOG_LEVELS } from '../lib/log.js';

/**
 * Options several commands share, defined once. Every option can also come from
 * the environment variable named in its help, and both go through the same
 * validating parser.
 */
export const kubeconfigOption = () =>
  new Option('--kubeconfig <path>', 'kubeconfig file (default: in-cluster service account)').env(
    'KUBECONFIG',
  );

export const logLevelOption = () =>
  new Option('--log-level <level>', 'log level')
    .choices(LOG_LEVELS)
    .default('info' as const)
    .env('TANDEM_LOG_LEVEL');

export const metricsAddressOption = (defaultAddress: string) =>
  new Option('--metrics-address <host:port>', 'where /metrics is served')
    .argParser(parseHostPort)
    .default(parseHostPort(defaultAddress), defaultAddress)
    .env('TANDEM_METRICS_ADDRESS');

/** Tandem's own namespace; `holds` says what the component keeps there. */
export const namespaceOption = (holds: string) =>
  new Option('--namespace <ns>', `Tandem's namespace: ${holds}`)
    .default(CREDENTIAL_NAMESPACE)
    .env('POD_NAMESPACE');

export const nodeIdOption = () =>
  new Option('--node-id <name>', 'name of the Kubernetes node this runs on')
    .argParser(nodeName)
    .env('NODE_NAME')
    .makeOptionMandatory();

export const csiEndpointOption = () =>
  new Option('--csi-endpoint <unix-path>', 'CSI gRPC socket')
    .argParser(unixSocketPath)
    .default('/csi/csi.sock', 'unix:///csi/csi.sock')
    .env('CSI_ENDPOINT');

export const outputOption = () =>
  new Option('-o, --output <format>', 'output format')
    .argParser(oneOf(['table', 'json'] as const))
    .default('table' as const);

/** A Tandem volume name (DNS-1123 subdomain: it names directories on nodes, so it must not escape them). */
export const volumeName = (value: string): string => {
  try {
    checkVolumeName(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return value;
};

export const absolutePath = (value: string): string => {
  if (!value.startsWith('/')) throw new InvalidArgumentError(`"${value}" is not an absolute path.`);
  return value;
};

/** Where the data plane's engines listen, as the node plugin and the share manager read it. */
export const engineSocketDirOption = () =>
  new Option('--engine-socket-dir <path>', "where the data plane's engines listen (one socket per volume)")
    .argParser(absolutePath)
    .default(DEFAULT_ENGINE_SOCKET_DIR)
    .env('TANDEM_ENGINE_SOCKET_DIR');

/** How a node attaches an engine's export as a block device (node plugin, share manager). */
export const frontendOption = () =>
  new Option(
    '--frontend <kind>',
    'block device frontend: auto (kernel NBD when present), kernel-nbd or nbdfuse',
  )
    .argParser(oneOf(['auto', 'kernel-nbd', 'nbdfuse'] as const))
    .default('auto' as const)
    .env('TANDEM_NODE_FRONTEND');

/**
 * A flag in a StorageClass parameter's list syntax, parsed by that parameter's own parser so both
 * accept the same text; the parser's messages are kept, under the flag's name.
 */
export function listParser<T>(
  flag: string,
  parse: (value: string) => { ok: true; value: T } | { ok: false; errors: string[] },
): (value: string) => T {
  return (value) => {
    const parsed = parse(value);
    if (!parsed.ok) throw new InvalidArgumentError(`${flag}: ${parsed.errors.join('; ')}`);
    return parsed.value;
  };
}
