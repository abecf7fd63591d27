/**
 * A small plain-HTTP endpoint for a component's metrics and admin actions, meant for loopback or
 * the pod network (no secrets pass through it): GET /metrics from a private registry, GET /healthz
 * for the kubelet's liveness probe, plus whatever POST actions the component adds (the engine's
 * POST /scrub).
 */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { errorMessage } from './errors.js';
import type { Logger } from './log.js';

/** An admin action; `body` is the request's JSON body (undefined when empty). */
export type AdminAction = (body: unknown) => Promise<unknown>;

/** Thrown by an action to answer with a client error (bad input) instead of 500. */
export class AdminInputError extends Error {
  override name = 'AdminInputError';
}

/**
 * A liveness check: true, or why the process should be restarted (a thrown error counts as its
 * message). The kubelet's httpGet probe calls /healthz directly: no livenessprobe sidecar.
 */
export type HealthCheck = () => Promise<true | string>;

export interface AdminOptions {
  /** Without one, /healthz answers ok whenever the process serves HTTP. */
  healthy?: HealthCheck;
  /** A check that takes longer fails, before the probe's own timeout (3 s in the manifests). */
  healthTimeoutMs?: number;
  /** Where failed checks are logged: the kubelet's event gives the status code, not the body. */
  logger?: Logger;
}

const MAX_BODY_BYTES = 64 * 1024;

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

export async function serveAdmin(
  registry: Registry,
  host: string,
  port: number,
  actions: Record<string, AdminAction> = {},
  options: AdminOptions = {},
): Promise<AdminServer> {
  const health = options.healthy;
  const healthTimeoutMs = options.healthTimeoutMs ?? 2500;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method === 'GET' && path === '/metrics') {
      registry.metrics().then(
        (text) => reply(200, registry.contentType, text),
        (err: unknown) => reply(500, 'text/plain', String(err)),
      );
      return;
    }
    if (req.method === 'GET' && path === '/healthz') {
      if (!health) return reply(200, 'text/plain', 'ok\n');
      checkHealth(health, healthTimeoutMs).then((result) => {
        if (result === true) return reply(200, 'text/plain', 'ok\n');
        options.logger?.warn({ reason: result }, 'health check failed');
        reply(503, 'text/plain', `${result}\n`);
      });
      return;
    }
    const action = req.method === 'POST' ? actions[path] : undefined;
    if (action === undefined) return reply(404, 'text/plain', `no ${req.method} ${path}; try GET /metrics\n`);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reply(413, 'application/json', `${JSON.stringify({ error: `body over ${MAX_BODY_BYTES} bytes` })}\n`);
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      let body: unknown;
      try {
        const text = Buffer.concat(chunks).toString('utf8').trim();
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        return reply(400, 'application/json', `${JSON.stringify({ error: 'the body is not JSON' })}\n`);
      }
      action(body).then(
        (result) => reply(200, 'application/json', `${JSON.stringify(result)}\n`),
        (err: unknown) =>
          reply(
            err instanceof AdminInputError ? 400 : 500,
            'application/json',
            `${JSON.stringify({ error: (err as Error).message })}\n`,
          ),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The check's verdict within the time limit; an error or a timeout is a failure with a reason. */
async function checkHealth(check: HealthCheck, timeoutMs: number): Promise<true | string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`health check did not finish within ${timeoutMs} ms`), timeoutMs);
  });
  try {
    const result = await Promise.race([check(), timeout]);
    return result === true ? true : String(result);
  } catch (err) {
    return errorMessage(err);
  } finally {
    clearTimeout(timer);
  }
}
