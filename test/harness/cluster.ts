import type { KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../lib/kube/client.js';

/** Set by jest's global setup to the kubeconfig of the shared test control plane. */
export const TEST_KUBECONFIG_ENV = 'TANDEM_TEST_KUBECONFIG';

/** The shared test cluster's config; fails loudly outside the integration project. */
export function testKubeConfig(): KubeConfig {
  const path = process.env[TEST_KUBECONFIG_ENV];
  if (!path)
    throw new Error(
      `${TEST_KUBECONFIG_ENV} is not set: run integration tests through jest's integration project`,
    );
  return loadKubeConfig(path);
}

/** A name no other test (or earlier run) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
}

/** Polls until `check` returns a value, or fails after `timeoutMs` with the last error. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`condition not met within ${timeoutMs} ms${lastError ? `: ${String(lastError)}` : ''}`);
}
