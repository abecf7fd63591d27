/**
 * The node plugin registers itself with the kubelet, as node-driver-registrar would: it serves the
 * kubelet's plugin-registration service (pluginregistration.Registration, v1) on
 * `<driver>-reg.sock` in the directory the kubelet watches (its plugins_registry). The kubelet
 * notices the socket, asks GetInfo where the CSI socket is, calls NodeGetInfo on it, and reports
 * the outcome with NotifyRegistrationStatus. Removing the socket unregisters the plugin.
 */
import type { Stats } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type GrpcObject, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import { CSI_DRIVER_NAME } from '../../lib/api/volume.js';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { canConnect } from '../../lib/readiness.js';
import { CsiServer } from '../csi/server.js';

/** PluginInfo.type for a CSI driver (the kubelet's registerapi.CSIPlugin). */
export const CSI_PLUGIN_TYPE = 'CSIPlugin';

/** The kubelet's CSI plugin handler accepts these; node-driver-registrar announces the same. */
export const SUPPORTED_VERSIONS: readonly string[] = ['1.0.0'];

/**
 * registration.proto as a protobufjs descriptor, built into the code so the image needs no .proto
 * next to dist/. Names and numbers follow the kubelet's api.proto (the package has no version in
 * its name); registration.test.ts talks to it with a client compiled from registration.proto.
 */
const DESCRIPTOR: Parameters<typeof fromJSON>[0] = {
  nested: {
    pluginregistration: {
      nested: {
        InfoRequest: { fields: {} },
        PluginInfo: {
          fields: {
            type: { type: 'string', id: 1 },
            name: { type: 'string', id: 2 },
            endpoint: { type: 'string', id: 3 },
            supported_versions: { rule: 'repeated', type: 'string', id: 4 },
          },
        },
        RegistrationStatus: {
          fields: {
            plugin_registered: { type: 'bool', id: 1 },
            error: { type: 'string', id: 2 },
          },
        },
        RegistrationStatusResponse: { fields: {} },
        Registration: {
          methods: {
            // protobufjs's type asks for a comment on every method.
            GetInfo: { requestType: 'InfoRequest', responseType: 'PluginInfo', comment: '' },
            NotifyRegistrationStatus: {
              requestType: 'RegistrationStatus',
              responseType: 'RegistrationStatusResponse',
              comment: '',
            },
          },
        },
      },
    },
  },
};

let loaded: ServiceClientConstructor | undefined;

/**
 * The Registration service. defaults: true matters: proto3 does not send `false`, so a refusal
 * arrives without plugin_registered and must read as false, not as undefined.
 */
export function registrationService(): ServiceClientConstructor {
  if (loaded) return loaded;
  const grpcObject = loadPackageDefinition(fromJSON(DESCRIPTOR, { keepCase: true, defaults: true }));
  const found = (grpcObject.pluginregistration as GrpcObject | undefined)?.Registration as
    | ServiceClientConstructor
    | undefined;
  if (typeof found !== 'function' || !found.service)
    throw new Error('the registration descriptor defines no pluginregistration.Registration');
  loaded = found;
  return found;
}

export interface PluginInfo {
  type: string;
  name: string;
  endpoint: string;
  supported_versions: string[];
}

export interface RegistrationStatus {
  plugin_registered: boolean;
  error: string;
}

/** Where node-driver-registrar would put the socket: the kubelet matches plugins by file, not by name. */
export function registrationSocketPath(registrationDir: string, driverName = CSI_DRIVER_NAME): string {
  return join(registrationDir, `${driverName}-reg.sock`);
}

export interface KubeletRegistrationOptions {
  /** The kubelet's plugins_registry as mounted in this container. */
  registrationDir: string;
  /** The CSI socket as the kubelet sees it on the host (GetInfo's endpoint). */
  kubeletEndpoint: string;
  logger: Logger;
  /**
   * Called once, after the reply is sent, when the kubelet refuses the plugin, with the kubelet's
   * error. node-driver-registrar exits then, so the container restarts and registers afresh; the
   * caller decides (the CLI exits non-zero).
   */
  onRefused: (error: string) => void;
  /** Defaults to csi.tandem.dev. */
  driverName?: string;
}

/** The registration socket and what the kubelet said about it. */
export class KubeletRegistration {
  readonly socketPath: string;
  private readonly server: CsiServer;
  private readonly logger: Logger;
  private readonly onRefused: (error: string) => void;
  private readonly registrationDir: string;
  /** The socket file this instance bound: a file of the same name with another inode is not ours. */
  private inode: number | undefined;
  private refusal: string | undefined;
  private registeredFlag = false;

  constructor(options: KubeletRegistrationOptions) {
    const driverName = options.driverName ?? CSI_DRIVER_NAME;
    this.registrationDir = options.registrationDir;
    this.socketPath = registrationSocketPath(options.registrationDir, driverName);
    this.logger = options.logger.child({ registration: this.socketPath });
    this.onRefused = options.onRefused;
    const info: PluginInfo = {
      type: CSI_PLUGIN_TYPE,
      name: driverName,
      endpoint: options.kubeletEndpoint,
      supported_versions: [...SUPPORTED_VERSIONS],
    };
    // The CSI server's plumbing (stale-socket check, logging, status codes, removal on stop)
    // serves this one service as well as it serves CSI.
    this.server = new CsiServer({
      endpoint: this.socketPath,
      logger: this.logger,
      services: [
        {
          definition: registrationService().service,
          handlers: {
            GetInfo: async (): Promise<PluginInfo> => info,
            NotifyRegistrationStatus: async (request: RegistrationStatus): Promise<Record<string, never>> => {
              this.notified(request);
              return {};
            },
          },
        },
      ],
    });
  }

  /** Whether the kubelet has said it registered the plugin. */
  get registered(): boolean {
    return this.registeredFlag;
  }

  /** Listens on the registration socket; call it once the CSI socket answers (the kubelet calls NodeGetInfo at once). */
  async start(): Promise<void> {
    // CsiServer would create a missing directory, which no kubelet watches: say so instead.
    const dir = await stat(this.registrationDir).catch(() => undefined);
    if (!dir?.isDirectory())
      throw new Error(
        `the kubelet's registration directory ${this.registrationDir} does not exist (is the plugins_registry hostPath mounted there?)`,
      );
    await this.server.start();
    this.inode = (await lstat(this.socketPath)).ino;
    this.logger.info('waiting for the kubelet to register the plugin');
  }

  /** Removes the socket, which unregisters the plugin from the kubelet. */
  async stop(): Promise<void> {
    await this.server.stop(1000);
    this.inode = undefined;
  }

  /**
   * true, or why the container should restart. node-driver-registrar's health check fails when
   * its socket is gone (the kubelet then no longer knows the plugin and will not until a socket
   * is created again), so does this; not-yet-registered is not a failure, the kubelet takes its time.
   */
  async health(): Promise<true | string> {
    if (this.refusal !== undefined) return `the kubelet refused the plugin: ${this.refusal}`;
    if (this.inode === undefined) return 'the registration socket is not served';
    let now: Stats;
    try {
      now = await lstat(this.socketPath);
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT'
        ? `the registration socket ${this.socketPath} is gone; the kubelet no longer sees the plugin`
        : `cannot stat the registration socket ${this.socketPath}: ${errorMessage(err)}`;
    }
    if (!now.isSocket() || now.ino !== this.inode)
      return `the registration socket ${this.socketPath} was replaced by another file`;
    if (!(await canConnect({ path: this.socketPath })))
      return `the registration socket ${this.socketPath} does not accept connections`;
    return true;
  }

  private notified(request: RegistrationStatus): void {
    if (request.plugin_registered === true) {
      this.registeredFlag = true;
      this.logger.info('the kubelet registered the plugin');
      return;
    }
    const error = request.error || 'no reason given';
    this.registeredFlag = false;
    this.logger.error({ kubeletError: error }, 'the kubelet refused to register the plugin');
    if (this.refusal !== undefined) return;
    this.refusal = error;
    // After the reply: the kubelet should not see its call fail because the plugin is exiting.
    setImmediate(() => this.onRefused(error));
  }
}
