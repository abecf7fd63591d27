import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  type KubeConfig,
  type V1MutatingWebhookConfiguration,
  type V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import { readManifests } from '../../lib/kube/manifests.js';
import { manifestsDir } from '../../lib/paths.js';

/**
 * Registers the real webhook configurations from manifests/webhook/, renamed
 * with a suffix and pointed at a URL (the test webhook runs on loopback, not
 * behind a Service). caBundle is left empty: the webhook publishes it.
 */
export async function registerWebhookConfigurations(kc: KubeConfig, baseUrl: string, suffix: string) {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const objects = await readManifests(join(manifestsDir(), 'webhook'));
  const pointAtUrl = <T extends { clientConfig: { url?: string; service?: { path?: string } } }>(
    webhooks: T[] = [],
  ) =>
    webhooks.map((w) => ({
      ...w,
      clientConfig: { url: `${baseUrl}${w.clientConfig.service?.path ?? '/validate'}` },
    }));

  const validating = objects.find(
    (o) => o.kind === 'ValidatingWebhookConfiguration',
  ) as V1ValidatingWebhookConfiguration;
  const mutating = objects.find(
    (o) => o.kind === 'MutatingWebhookConfiguration',
  ) as V1MutatingWebhookConfiguration;
  const names = { validating: `tandem-validating-${suffix}`, mutating: `tandem-mutating-${suffix}` };
  await api.createValidatingWebhookConfiguration({
    body: { ...validating, metadata: { name: names.validating }, webhooks: pointAtUrl(validating.webhooks) },
  });
  await api.createMutatingWebhookConfiguration({
    body: { ...mutating, metadata: { name: names.mutating }, webhooks: pointAtUrl(mutating.webhooks) },
  });
  return {
    names,
    remove: async () => {
      await api.deleteValidatingWebhookConfiguration({ name: names.validating }).catch(() => undefined);
      await api.deleteMutatingWebhookConfiguration({ name: names.mutating }).catch(() => undefined);
    },
  };
}
