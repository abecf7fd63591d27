import { X509Certificate } from 'node:crypto';
import { CertificateAuthority } from './pki.js';

describe('CertificateAuthority', () => {
  const ca = CertificateAuthority.create('tandem-test-ca');

  it('issues a serving certificate signed by the CA with the requested SANs', () => {
    const pair = ca.issue({
      commonName: 'apiserver',
      dnsNames: ['localhost', 'kubernetes.default.svc'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    const cert = new X509Certificate(pair.cert);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.checkHost('kubernetes.default.svc')).toBe('kubernetes.default.svc');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkHost('example.invalid')).toBeUndefined();
    expect(cert.ca).toBe(false);
  });

  it('puts organizations in the subject (how Kubernetes reads groups)', () => {
    const cert = new X509Certificate(
      ca.issue({ commonName: 'admin', organizations: ['system:masters'], usage: 'client' }).cert,
    );
    expect(cert.subject).toContain('O=system:masters');
    expect(cert.subject).toContain('CN=admin');
  });

  it('reloads a persisted CA and refuses a key that does not match', () => {
    const reloaded = CertificateAuthority.fromPem(ca.certPem, ca.keyPem);
    const cert = new X509Certificate(reloaded.issue({ commonName: 'again' }).cert);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    const other = CertificateAuthority.create('other');
    expect(() => CertificateAuthority.fromPem(ca.certPem, other.keyPem)).toThrow(/does not belong/);
  });

  it('issues certificates with the requested lifetime', () => {
    const cert = new X509Certificate(ca.issue({ commonName: 'short', validForMs: 10_000 }).cert);
    const lifetime = Date.parse(cert.validTo) - Date.now();
    expect(lifetime).toBeGreaterThan(5_000);
    expect(lifetime).toBeLessThanOrEqual(11_000);
  });

  it('never repeats a serial number', () => {
    const serials = new Set(
      Array.from({ length: 5 }, () => new X509Certificate(ca.issue({ commonName: 'x' }).cert).serialNumber),
    );
    expect(serials.size).toBe(5);
  });
});
