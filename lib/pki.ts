import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

/** A PEM certificate and its PEM private key. */
export interface KeyPair {
  cert: string;
  key: string;
}

export interface CertificateRequest {
  commonName: string;
  organizations?: string[];
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Both server and client auth when omitted. */
  usage?: 'server' | 'client' | 'both';
  /** Lifetime; default one year. */
  validForMs?: number;
}

const DAY_MS = 86_400_000;

/**
 * RSA keys come from node's native crypto (node-forge's pure JavaScript
 * generator takes seconds per key); node-forge builds and signs the X.509
 * certificates.
 */
function newRsaKey(): forge.pki.rsa.PrivateKey {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
}

/** A positive 128-bit serial, random so that no two certificates share one. */
function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

function validity(cert: forge.pki.Certificate, validForMs: number): void {
  const now = Date.now();
  // Backdate to tolerate clock skew between nodes, but by no more than a tenth
  // of the lifetime, so a short-lived certificate is not born half-expired.
  cert.validity.notBefore = new Date(now - Math.min(60_000, validForMs / 10));
  cert.validity.notAfter = new Date(now + validForMs);
}

export class CertificateAuthority {
  private constructor(
    private readonly caCert: forge.pki.Certificate,
    private readonly caKey: forge.pki.rsa.PrivateKey,
  ) {}

  static create(commonName: string, validForMs = 365 * DAY_MS): CertificateAuthority {
    const key = newRsaKey();
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.rsa.setPublicKey(key.n, key.e);
    cert.serialNumber = newSerial();
    validity(cert, validForMs);
    const subject = [{ name: 'commonName', value: commonName }];
    cert.setSubject(subject);
    cert.setIssuer(subject);
    cert.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ]);
    cert.sign(key, forge.md.sha256.create());
    return new CertificateAuthority(cert, key);
  }

  /** A CA persisted earlier (e.g. in a Secret); throws when the key does not match the certificate. */
  static fromPem(certPem: string, keyPem: string): CertificateAuthority {
    const cert = forge.pki.certificateFromPem(certPem);
    const key = forge.pki.privateKeyFromPem(keyPem);
    const publicKey = cert.publicKey as forge.pki.rsa.PublicKey;
    if (publicKey.n.compareTo(key.n) !== 0)
      throw new Error('the CA key does not belong to the CA certificate');
    return new CertificateAuthority(cert, key);
  }

  get certPem(): string {
    return forge.pki.certificateToPem(this.caCert);
  }

  get keyPem(): string {
    return forge.pki.privateKeyToPem(this.caKey);
  }

  get notAfter(): Date {
    return this.caCert.validity.notAfter;
  }

  issue(request: CertificateRequest): KeyPair {
    const key = newRsaKey();
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.rsa.setPublicKey(key.n, key.e);
    cert.serialNumber = newSerial();
    validity(cert, request.validForMs ?? 365 * DAY_MS);
    cert.setSubject([
      { name: 'commonName', value: request.commonName },
      ...(request.organizations ?? []).map((o) => ({ name: 'organizationName', value: o })),
    ]);
    cert.setIssuer(this.caCert.subject.attributes);
    const usage = request.usage ?? 'both';
    const altNames = [
      ...(request.dnsNames ?? []).map((value) => ({ type: 2, value })),
      ...(request.ipAddresses ?? []).map((ip) => ({ type: 7, ip })),
    ];
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: usage !== 'client', clientAuth: usage !== 'server' },
      {
        name: 'authorityKeyIdentifier',
        keyIdentifier: this.caCert.generateSubjectKeyIdentifier().getBytes(),
      },
      ...(altNames.length > 0 ? [{ name: 'subjectAltName', altNames }] : []),
    ]);
    cert.sign(this.caKey, forge.md.sha256.create());
    return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(key) };
  }
}

/** A bare RSA key pair in PEM (the apiserver's service-account signing key). */
export function rsaKeyPairPem(): { publicKey: string; privateKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}
