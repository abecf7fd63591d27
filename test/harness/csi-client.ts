/**
 * A promise-returning CSI client over a unix socket (grpc-js, the driver's own csi.proto), for
 * integration tests and benchmarks that call the driver as a CO would. Errors keep the gRPC code
 * (`err.code`), so callers can tell ABORTED or UNAVAILABLE (retry) from real failures.
 */
import { type Client, credentials, type ServiceError, status } from '@grpc/grpc-js';
import { csiClients } from '../../driver/csi/proto.js';

type Service = 'Identity' | 'Controller' | 'Node';
type Unary = (
  request: unknown,
  options: { deadline: number },
  callback: (err: ServiceError | null, response: unknown) => void,
) => void;

export class CsiClient {
  readonly #clients = new Map<Service, Client>();

  constructor(readonly socket: string) {}

  #client(service: Service): Client {
    let client = this.#clients.get(service);
    if (!client) {
      client = new (csiClients()[service])(`unix://${this.socket}`, credentials.createInsecure());
      this.#clients.set(service, client);
    }
    return client;
  }

  /** One unary call; `timeoutMs` is the gRPC deadline. */
  call<T = Record<string, unknown>>(
    service: Service,
    method: string,
    request: object,
    timeoutMs = 120_000,
  ): Promise<T> {
    const client = this.#client(service) as unknown as Record<string, Unary>;
    const fn = client[method];
    if (typeof fn !== 'function') throw new Error(`csi.v1.${service} has no method ${method}`);
    return new Promise((resolve, reject) => {
      fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err, response) =>
        err ? reject(err) : resolve(response as T),
      );
    });
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

/** Codes a CO retries on: the call may succeed when repeated. */
export function isRetryable(err: unknown): boolean {
  const code = (err as ServiceError | undefined)?.code;
  return code === status.ABORTED || code === status.UNAVAILABLE || code === status.DEADLINE_EXCEEDED;
}

/** Repeats `fn` while it fails with a retryable code (as the sidecars and kubelet do), up to `timeoutMs`. */
export async function retrying<T>(fn: () => Promise<T>, timeoutMs = 120_000, pauseMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!isRetryable(err) || Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  }
}

/** The capability requests for a mount (ext4) or block volume, single-node writer. */
export function capability(kind: 'mount' | 'block'): object {
  const access_mode = { mode: 'SINGLE_NODE_WRITER' };
  return kind === 'mount'
    ? { mount: { fs_type: 'ext4', mount_flags: [] }, access_mode }
    : { block: {}, access_mode };
}
