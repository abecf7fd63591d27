import { X509Certificate } from 'node:crypto';
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  type KubeConfig,
  type V1Secret,
} from '@kubernetes/client-node';
import { errorMessage } from '../lib/errors.js';
import { type Logger, silentLogger } from '../lib/log.js';
import { CertificateAuthority, type KeyPair } from '../lib/pki.js';

const DAY_MS = 86_400_000;

export interface CertificateManagerOptions {
  kc: KubeConfig;
  namespace: string;
  /** Secret holding ca.crt, ca.key, tls.crt, tls.key (and ca-previous.crt during a CA rotation). */
  secretName: string;
  /** DNS names the serving certificate must cover (the webhook Service's names). */
  dnsNames: string[];
  ipAddresses?: string[];
  validatingConfigurations: string[];
  mutatingConfigurations: string[];
  caValidForMs?: number;
  servingValidForMs?: number;
  /** Renew once less than this fraction of a certificate's lifetime remains (default 1/3). */
  renewWhenRemaining?: number;
  checkIntervalMs?: number;
  /** Wait after publishing a new CA before serving a certificate it signed. */
  caPropagationMs?: number;
  /** Called with every new serving certificate; the server swaps its TLS context. */
  onServingCertificate: (pair: KeyPair) => void;
  logger?: Logger;
}

interface Material {
  ca: CertificateAuthority;
  previousCaPem?: string;
  serving: KeyPair;
}

/**
 * Keeps the webhook's TLS material valid. The CA and the serving certificate
 * live in a Secret so every replica serves the same chain and a restart keeps
 * it; whichever replica renews first writes the Secret (optimistic
 * concurrency), the others adopt it. A renewed serving certificate signed by
 * the same CA changes nothing the apiserver trusts, so swapping it drops no
 * request. A CA nearing its end is rotated with both CAs in caBundle until
 * the old one expires.
 */
export class CertificateManager {
  private material: Material | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly core: CoreV1Api;
  private readonly admission: AdmissionregistrationV1Api;
  private readonly logger: Logger;
  renewals = 0;

  constructor(private readonly options: CertificateManagerOptions) {
    this.core = options.kc.makeApiClient(CoreV1Api);
    this.admission = options.kc.makeApiClient(AdmissionregistrationV1Api);
    this.logger = options.logger ?? silentLogger();
  }

  /** Loads or creates the material, publishes caBundle, and starts the renewal checks. */
  async start(): Promise<KeyPair> {
    await this.reconcile(true);
    this.timer = setInterval(() => {
      this.reconcile(false).catch((err) =>
        this.logger.error({ err: errorMessage(err) }, 'certificate check failed; retrying at the next check'),
      );
    }, this.options.checkIntervalMs ?? 3_600_000);
    this.timer.unref();
    const serving = this.material?.serving;
    if (!serving) throw new Error('no serving certificate after start');
    return serving;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  get caBundlePem(): string {
    return this.material ? this.caBundleOf(this.material) : '';
  }

  private async reconcile(starting: boolean): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const secret = await this.readSecret();
      const stored = secret ? this.decode(secret) : undefined;
      const { material, caRotated, servingRenewed } = this.renew(stored);
      if (caRotated || servingRenewed || !secret) {
        if (!(await this.writeSecret(secret, material))) continue; // another replica renewed first: adopt its result
      }
      const changed = this.material?.serving.cert !== material.serving.cert;
      const bundleChanged = this.material === undefined || this.caBundleOf(material) !== this.caBundlePem;
      if (starting || bundleChanged) await this.publishCaBundle(this.caBundleOf(material));
      if (caRotated && !starting)
        await new Promise((r) => setTimeout(r, this.options.caPropagationMs ?? 5_000));
      this.material = material;
      if (changed) {
        if (!starting) this.renewals++;
        this.logger.info(
          { notAfter: new X509Certificate(material.serving.cert).validTo, caRotated },
          'serving certificate in use',
        );
        this.options.onServingCertificate(material.serving);
      }
      return;
    }
    throw new Error(
      `could not write Secret ${this.options.namespace}/${this.options.secretName}: it kept changing`,
    );
  }

  private renew(stored: Material | undefined): {
    material: Material;
    caRotated: boolean;
    servingRenewed: boolean;
  } {
    const caLifetime = this.options.caValidForMs ?? 3_650 * DAY_MS;
    let ca = stored?.ca;
    let previousCaPem =
      stored?.previousCaPem && !expired(stored.previousCaPem) ? stored.previousCaPem : undefined;
    let caRotated = false;
    if (!ca || this.dueForRenewal(ca.certPem)) {
      if (ca) previousCaPem = ca.certPem;
      ca = CertificateAuthority.create(`tandem-webhook-ca-${Date.now()}`, caLifetime);
      caRotated = true;
    }
    let serving = stored?.serving;
    const servingRenewed =
      caRotated || !serving || this.dueForRenewal(serving.cert) || !this.covers(serving.cert, ca);
    if (servingRenewed || !serving) {
      serving = ca.issue({
        commonName: this.options.dnsNames[0] ?? 'tandem-webhook',
        dnsNames: this.options.dnsNames,
        ipAddresses: this.options.ipAddresses ?? [],
        usage: 'server',
        validForMs: this.options.servingValidForMs ?? 365 * DAY_MS,
      });
    }
    return {
      material: { ca, serving, ...(previousCaPem ? { previousCaPem } : {}) },
      caRotated,
      servingRenewed,
    };
  }

  private dueForRenewal(certPem: string): boolean {
    const cert = new X509Certificate(certPem);
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    return to - Date.now() < (to - from) * (this.options.renewWhenRemaining ?? 1 / 3);
  }

  /** Signed by this CA and naming every DNS name and IP the webhook is reached by. */
  private covers(certPem: string, ca: CertificateAuthority): boolean {
    const cert = new X509Certificate(certPem);
    if (!cert.verify(new X509Certificate(ca.certPem).publicKey)) return false;
    return (
      this.options.dnsNames.every((name) => cert.checkHost(name, { wildcards: false }) === name) &&
      (this.options.ipAddresses ?? []).every((ip) => cert.checkIP(ip) === ip)
    );
  }

  private caBundleOf(material: Material): string {
    return [material.ca.certPem, material.previousCaPem].filter(Boolean).join('');
  }

  private decode(secret: V1Secret): Material | undefined {
    const data = secret.data ?? {};
    const text = (key: string) => (data[key] ? Buffer.from(data[key], 'base64').toString() : undefined);
    const [caCert, caKey, cert, key] = [text('ca.crt'), text('ca.key'), text('tls.crt'), text('tls.key')];
    if (!caCert || !caKey || !cert || !key) return undefined;
    try {
      const previous = text('ca-previous.crt');
      return {
        ca: CertificateAuthority.fromPem(caCert, caKey),
        serving: { cert, key },
        ...(previous ? { previousCaPem: previous } : {}),
      };
    } catch (err) {
      this.logger.warn(
        { err: errorMessage(err) },
        'stored webhook certificates are unusable; issuing new ones',
      );
      return undefined;
    }
  }

  private async readSecret(): Promise<V1Secret | undefined> {
    try {
      return await this.core.readNamespacedSecret({
        name: this.options.secretName,
        namespace: this.options.namespace,
      });
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw err;
    }
  }

  /** false when another writer got there first (409), so the caller re-reads. */
  private async writeSecret(existing: V1Secret | undefined, material: Material): Promise<boolean> {
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    const body: V1Secret = {
      metadata: {
        name: this.options.secretName,
        namespace: this.options.namespace,
        labels: { 'app.kubernetes.io/name': 'tandem', 'app.kubernetes.io/component': 'webhook' },
        ...(existing?.metadata?.resourceVersion
          ? { resourceVersion: existing.metadata.resourceVersion }
          : {}),
      },
      type: 'kubernetes.io/tls',
      data: {
        'ca.crt': b64(material.ca.certPem),
        'ca.key': b64(material.ca.keyPem),
        'tls.crt': b64(material.serving.cert),
        'tls.key': b64(material.serving.key),
        ...(material.previousCaPem ? { 'ca-previous.crt': b64(material.previousCaPem) } : {}),
      },
    };
    try {
      if (existing)
        await this.core.replaceNamespacedSecret({
          name: this.options.secretName,
          namespace: this.options.namespace,
          body,
        });
      else await this.core.createNamespacedSecret({ namespace: this.options.namespace, body });
      return true;
    } catch (err) {
      if (err instanceof ApiException && err.code === 409) return false;
      throw err;
    }
  }

  private async publishCaBundle(bundlePem: string): Promise<void> {
    const caBundle = Buffer.from(bundlePem).toString('base64');
    const a = this.admission;
    await Promise.all([
      ...this.options.validatingConfigurations.map((name) =>
        this.updateWebhooks(
          name,
          caBundle,
          () => a.readValidatingWebhookConfiguration({ name }),
          (body) => a.replaceValidatingWebhookConfiguration({ name, body }),
        ),
      ),
      ...this.options.mutatingConfigurations.map((name) =>
        this.updateWebhooks(
          name,
          caBundle,
          () => a.readMutatingWebhookConfiguration({ name }),
          (body) => a.replaceMutatingWebhookConfiguration({ name, body }),
        ),
      ),
    ]);
  }

  /** Read-modify-replace with resourceVersion, retried on conflict; a missing configuration is logged, not fatal. */
  private async updateWebhooks<T extends { webhooks?: { clientConfig: { caBundle?: string } }[] }>(
    name: string,
    caBundle: string,
    read: () => Promise<T>,
    replace: (body: T) => Promise<T>,
  ): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      let config: T;
      try {
        config = await read();
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) {
          this.logger.warn(
            { configuration: name },
            'webhook configuration not found; caBundle not published there',
          );
          return;
        }
        throw err;
      }
      if ((config.webhooks ?? []).every((w) => w.clientConfig.caBundle === caBundle)) return;
      for (const webhook of config.webhooks ?? []) webhook.clientConfig.caBundle = caBundle;
      try {
        await replace(config);
        this.logger.info({ configuration: name }, 'caBundle published');
        return;
      } catch (err) {
        if (!(err instanceof ApiException && err.code === 409)) throw err;
      }
    }
    throw new Error(`webhook configuration ${name} kept changing while publishing caBundle`);
  }
}

function expired(certPem: string): boolean {
  return Date.parse(new X509Certificate(certPem).validTo) < Date.now();
}
