import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Registry } from 'prom-client';
import { type Logger, silentLogger } from '../lib/log.js';
import type { KeyPair } from '../lib/pki.js';
import type { ClusterView } from './cluster-view.js';
import { mutate, validate } from './dispatch.js';
import { AdmissionMetrics } from './metrics.js';
import {
  answerReview,
  countBadRequest,
  type Decide,
  MAX_BODY,
  plainJson,
  type ReviewContext,
  serveReview,
} from './review-endpoint.js';

export interface WebhookServerOptions {
  host: string;
  port: number;
  certificate: KeyPair;
  view: ClusterView;
  registry: Registry;
  /** /readyz answers 200 only when this says so (caches synced, certificate published). */
  ready: () => boolean;
  logger?: Logger;
}

export interface WebhookServer {
  server: Server;
  port: number;
  /** New connections use the new certificate; open ones finish with the old. */
  useCertificate(pair: KeyPair): void;
  close(): Promise<void>;
}

/**
 * The express app (health, readiness, metrics, errors, and admission requests the direct path of
 * review-endpoint.ts does not take) and the context both share.
 */
export function createWebhookApp(options: Omit<WebhookServerOptions, 'host' | 'port' | 'certificate'>): {
  app: express.Express;
  context: ReviewContext;
} {
  const logger = options.logger ?? silentLogger();
  const context: ReviewContext = {
    view: options.view,
    metrics: new AdmissionMetrics(options.registry),
    logger,
  };
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  const review = (endpoint: string, decide: Decide) => async (req: Request, res: Response) => {
    const started = performance.now();
    if (!req.is('application/json')) {
      countBadRequest(context, endpoint, started);
      res.status(415).json({ error: 'Content-Type must be application/json (an AdmissionReview)' });
      return;
    }
    const { status, json } = await answerReview(endpoint, decide, req.body, context, started);
    res.status(status).json(json);
  };

  const json = express.json({ limit: MAX_BODY, type: 'application/json', strict: true });
  app.post('/validate', json, review('validate', validate));
  app.post('/mutate', json, review('mutate', mutate));
  app.all(['/validate', '/mutate'], (_req, res) => {
    res.status(405).set('Allow', 'POST').json({ error: 'use POST with an AdmissionReview' });
  });
  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok');
  });
  app.get('/readyz', (_req, res) => {
    if (options.ready()) res.type('text/plain').send('ok');
    else res.status(503).type('text/plain').send('not ready: caches syncing or certificate not published');
  });
  app.get('/metrics', async (_req, res) => {
    res.type(options.registry.contentType).send(await options.registry.metrics());
  });
  app.use((_req, res) => {
    res
      .status(404)
      .json({ error: 'not found; endpoints: POST /validate, POST /mutate, GET /healthz, /readyz, /metrics' });
  });
  // Body-parser errors (invalid JSON 400, too large 413, bad charset 415) keep their 4xx; nothing here is a 5xx.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = httpStatusOf(err);
    res.status(status >= 400 && status < 500 ? status : 400).json({ error: clientMessage(err, status) });
  });
  return { app, context };
}

const DIRECT: Record<string, { endpoint: string; decide: Decide }> = {
  '/validate': { endpoint: 'validate', decide: validate },
  '/mutate': { endpoint: 'mutate', decide: mutate },
};

export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const { app, context } = createWebhookApp(options);
  const server = createServer(
    { key: options.certificate.key, cert: options.certificate.cert, minVersion: 'TLSv1.2' },
    (req, res) => {
      const direct = req.method === 'POST' ? DIRECT[req.url ?? ''] : undefined;
      if (direct !== undefined && plainJson(req))
        serveReview(direct.endpoint, direct.decide, req, res, context);
      else void app(req, res);
    },
  );
  // Bounded keep-alive: the apiserver reuses connections, a stuck client cannot hold one forever.
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    useCertificate: (pair) =>
      server.setSecureContext({ key: pair.key, cert: pair.cert, minVersion: 'TLSv1.2' }),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function httpStatusOf(err: unknown): number {
  if (typeof err === 'object' && err !== null) {
    const status =
      (err as { status?: unknown; statusCode?: unknown }).status ??
      (err as { statusCode?: unknown }).statusCode;
    if (typeof status === 'number') return status;
  }
  return 400;
}

function clientMessage(err: unknown, status: number): string {
  if (status === 413) return `the body is larger than ${MAX_BODY}`;
  if (status === 415) return 'unsupported body encoding; send UTF-8 JSON';
  if (err instanceof SyntaxError) return `the body is not valid JSON: ${err.message}`;
  return 'malformed request';
}
