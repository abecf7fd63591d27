/**
 * Unary calls through a plain grpc-js client (as csiClients() makes them), for tests that talk to
 * a CSI service directly: `call` resolves with the response or rejects with the ServiceError,
 * `codeOf` says which status code a call ended with.
 */
import { type Client, type ServiceError, status } from '@grpc/grpc-js';

type Unary = (request: object, callback: (err: ServiceError | null, response: unknown) => void) => void;

/** One unary call through the real grpc-js client. */
export function call<T = Record<string, unknown>>(
  client: Client,
  method: string,
  request: object,
): Promise<T> {
  const fn = (client as unknown as Record<string, Unary>)[method];
  if (!fn) throw new Error(`no client method ${method}`);
  return new Promise((resolve, reject) =>
    fn.call(client, request, (err, res) => (err ? reject(err) : resolve(res as T))),
  );
}

/** The gRPC status a call ended with (OK when it resolved). */
export async function codeOf(promise: Promise<unknown>): Promise<status> {
  try {
    await promise;
  } catch (err) {
    return (err as ServiceError).code;
  }
  return status.OK;
}
