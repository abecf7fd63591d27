/**
 * Child process of the webhook benchmark: serves either the real webhook
 * (in-memory cluster view) or a bare HTTPS endpoint that answers a fixed
 * AdmissionReview (the reference), prints its port, and runs until killed.
 */
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createRegistry } from '../lib/metrics.js';
import { CertificateAuthority } from '../lib/pki.js';
import { fakeClusterView } from '../webhook/rules/fake-cluster-view.js';
import { startWebhookServer } from '../webhook/server.js';

const mode = process.argv[2];
const ca = CertificateAuthority.create('bench-ca');
const certificate = ca.issue({ commonName: 'bench', ipAddresses: ['127.0.0.1'], usage: 'server' });

/** A Tandem class and claim, so the benchmarked review runs the real claim rule with lookups. */
const view = fakeClusterView({
  storageClasses: [
    { metadata: { name: 'tandem' }, provisioner: 'csi.tandem.dev', parameters: { numberOfReplicas: '3' } },
  ],
});

if (mode === 'webhook') {
  const server = await startWebhookServer({
    host: '127.0.0.1',
    port: 0,
    certificate,
    view,
    registry: createRegistry('bench', false),
    ready: () => true,
  });
  process.stdout.write(`${server.port}\n`);
} else if (mode === 'reference') {
  const fixed = JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: { uid: 'x', allowed: true },
  });
  const server = createServer(
    { key: certificate.key, cert: certificate.cert, minVersion: 'TLSv1.2' },
    (req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(fixed);
      });
    },
  );
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
} else {
  process.stderr.write('usage: webhook-server.ts webhook|reference\n');
  process.exit(2);
}
