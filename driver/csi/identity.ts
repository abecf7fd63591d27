import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CSI_DRIVER_NAME } from '../../lib/api/volume.js';
import { errorMessage } from '../../lib/errors.js';
import { packageRoot } from '../../lib/paths.js';
import type { RpcContext } from './rpc.js';

export interface GetPluginInfoResponse {
  name: string;
  vendor_version: string;
  manifest: Record<string, string>;
}

export type PluginCapability =
  | {
      service: {
        type: 'CONTROLLER_SERVICE' | 'VOLUME_ACCESSIBILITY_CONSTRAINTS' | 'GROUP_CONTROLLER_SERVICE';
      };
    }
  | { volume_expansion: { type: 'ONLINE' | 'OFFLINE' } };

export interface GetPluginCapabilitiesResponse {
  capabilities: PluginCapability[];
}

export interface ProbeResponse {
  /** A google.protobuf.BoolValue: unset would mean "ready" to the caller, so it is always set. */
  ready: { value: boolean };
}

export interface IdentityOptions {
  /** Whether the plugin can serve now (e.g. the API server answers, informers synced). */
  ready: () => Promise<boolean>;
  /** Defaults to the package version, the one `tandem --version` prints. */
  vendorVersion?: string;
  /** A check that takes longer counts as not ready: a hung Probe would hold up the liveness probe. */
  probeTimeoutMs?: number;
}

/** The version in Tandem's package.json, read once. */
let cachedVersion: string | undefined;
export function packageVersion(): string {
  cachedVersion ??= (
    JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }
  ).version;
  return cachedVersion;
}

/**
 * Identity is served by both the controller and the node plugin: the
 * sidecars ask the driver's name and capabilities on start-up, and each
 * process's own /healthz (lib/http-admin.ts, the kubelet's liveness probe)
 * checks the readiness Probe reports, in place of the livenessprobe sidecar.
 */
export function identityHandlers(options: IdentityOptions) {
  const vendorVersion = options.vendorVersion ?? packageVersion();
  const probeTimeoutMs = options.probeTimeoutMs ?? 5000;
  return {
    GetPluginInfo: async (): Promise<GetPluginInfoResponse> => ({
      name: CSI_DRIVER_NAME,
      vendor_version: vendorVersion,
      manifest: {},
    }),

    // Capabilities of the driver as a whole, the same from every process: the
    // provisioner and attacher read them from the controller, kubelet from the node.
    GetPluginCapabilities: async (): Promise<GetPluginCapabilitiesResponse> => ({
      capabilities: [
        { service: { type: 'CONTROLLER_SERVICE' } },
        { service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } },
        { volume_expansion: { type: 'ONLINE' } },
      ],
    }),

    // A failing or hanging check reports "not ready" rather than an error: the
    // spec reserves errors for a plugin that cannot answer at all, and the
    // reason goes to the log, where an operator looks for it.
    Probe: async (_request: unknown, context: RpcContext): Promise<ProbeResponse> => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => {
          context.logger.warn({ timeoutMs: probeTimeoutMs }, 'readiness check timed out');
          resolve(false);
        }, probeTimeoutMs);
      });
      try {
        const ready = await Promise.race([options.ready(), timeout]);
        return { ready: { value: ready === true } };
      } catch (err) {
        context.logger.warn({ err: errorMessage(err) }, 'readiness check failed');
        return { ready: { value: false } };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
