/**
 * The admission endpoints (POST /validate, POST /mutate) without a framework: read the body within
 * MAX_BODY_BYTES, parse it, decide, answer. Express still serves every other route and every
 * admission request this path does not take (a Content-Encoding, another charset, another media
 * type), with the same answers.
 *
 * Why not through express: at 1,000 reviews/s its per-request machinery (router layers, body-parser
 * streams, type-is/media-typer parsing, response helpers) was most of the webhook's allocations,
 * and the young-generation collections they caused were its p99 (docs/webhook.md, Performance).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { AdmissionRequest, Verdict } from './admission.js';
import type { ClusterView } from './cluster-view.js';
import { resourceKey } from './dispatch.js';
import type { AdmissionMetrics, AdmissionOutcome } from './metrics.js';
import { decodeAdmissionReview, encodeVerdict } from './review.js';

/** An AdmissionReview carries the object and its old version; etcd caps objects at 1.5 MiB. */
export const MAX_BODY = '4mb';
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

export type Decide = (request: AdmissionRequest, view: ClusterView) => Promise<Verdict> | Verdict;

export interface ReviewContext {
  view: ClusterView;
  metrics: AdmissionMetrics;
  logger: Logger;
}

/** Counts a request refused before its review could be read (media type, JSON, envelope). */
export function countBadRequest(context: ReviewContext, endpoint: string, started: number): void {
  context.metrics.observe(
    endpoint,
    'unknown',
    'unknown',
    'bad_request',
    (performance.now() - started) / 1000,
  );
}

/** What to answer to a parsed body: HTTP status and the JSON to send. */
export async function answerReview(
  endpoint: string,
  decide: Decide,
  body: unknown,
  context: ReviewContext,
  started: number,
): Promise<{ status: number; json: unknown }> {
  const decoded = decodeAdmissionReview(body);
  if (!decoded.ok) {
    countBadRequest(context, endpoint, started);
    return { status: 400, json: { error: decoded.error } };
  }
  const request = decoded.request;
  let verdict: Verdict;
  let outcome: AdmissionOutcome;
  try {
    verdict = await decide(request, context.view);
    outcome = verdict.allowed ? 'allowed' : 'denied';
  } catch (err) {
    // A lookup failed (apiserver unreachable, ...): refuse rather than admit unchecked, and say why.
    context.logger.error(
      { err: errorMessage(err), uid: request.uid, resource: resourceKey(request) },
      'admission check failed',
    );
    verdict = {
      allowed: false,
      code: 403,
      message: `Tandem could not check this request (${errorMessage(err)}); try again`,
    };
    outcome = 'error';
  }
  const seconds = (performance.now() - started) / 1000;
  context.metrics.observe(endpoint, request.kind.kind, request.operation, outcome, seconds);
  if (!verdict.allowed)
    context.logger.info(
      { uid: request.uid, kind: request.kind.kind, name: request.name, message: verdict.message },
      'denied',
    );
  return { status: 200, json: encodeVerdict(request.uid, verdict) };
}

/** application/json with no charset or UTF-8, and no Content-Encoding: what this path reads. */
export function plainJson(req: IncomingMessage): boolean {
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return false;
  const type = req.headers['content-type'];
  if (type === undefined) return false;
  const [media, ...params] = type.split(';');
  if (media?.trim().toLowerCase() !== 'application/json') return false;
  return params.every((p) => {
    const [name, value] = p.split('=');
    if (name?.trim().toLowerCase() !== 'charset') return true;
    return ['utf-8', 'utf8', '"utf-8"'].includes(value?.trim().toLowerCase() ?? '');
  });
}

/** Reads the body (bounded), answers the review; every failure is a 4xx with a message. */
export function serveReview(
  endpoint: string,
  decide: Decide,
  req: IncomingMessage,
  res: ServerResponse,
  context: ReviewContext,
): void {
  const started = performance.now();
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) {
    req.resume(); // drained, so the connection stays usable
    send(res, 413, { error: `the body is larger than ${MAX_BODY}` });
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let refused = false;
  req.on('data', (chunk: Buffer) => {
    if (refused) return;
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      refused = true;
      chunks.length = 0;
      send(res, 413, { error: `the body is larger than ${MAX_BODY}` });
      return;
    }
    chunks.push(chunk);
  });
  req.on('error', () => res.destroy());
  req.on('end', () => {
    if (refused) return;
    let body: unknown;
    try {
      body = JSON.parse(
        (chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)).toString('utf8'),
      );
    } catch (err) {
      countBadRequest(context, endpoint, started);
      send(res, 400, { error: `the body is not valid JSON: ${errorMessage(err)}` });
      return;
    }
    answerReview(endpoint, decide, body, context, started).then(
      ({ status, json }) => send(res, status, json),
      (err: unknown) => send(res, 400, { error: `malformed request: ${errorMessage(err)}` }),
    );
  });
}

function send(res: ServerResponse, status: number, json: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(json);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
