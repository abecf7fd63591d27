import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Client, credentials, type ServiceError, status } from '@grpc/grpc-js';
import { VERSION } from '../../cli/program.js';
import { silentLogger } from '../../lib/log.js';
import { identityHandlers } from './identity.js';
import { csiClients, csiServices } from './proto.js';
import { CsiServer } from './server.js';

type Unary = (request: object, callback: (err: ServiceError | null, response: unknown) => void) => void;

/** One unary call through a real grpc-js client, as a promise. */
function call(client: Client, method: string, request: object = {}): Promise<unknown> {
  const fn = (client as unknown as Record<string, Unary>)[method];
  if (!fn) throw new Error(`no client method ${method}`);
  return new Promise((resolve, reject) =>
    fn.call(client, request, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

let dir: string;
let socket: string;
const servers: CsiServer[] = [];
const clients: Client[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tandem-csi-'));
  socket = join(dir, 'csi.sock');
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const server of servers.splice(0)) await server.stop(100);
  await rm(dir, { recursive: true, force: true });
});

async function serveIdentity(ready: () => Promise<boolean>, endpoint = `unix://${socket}`) {
  const server = new CsiServer({
    endpoint,
    logger: silentLogger(),
    services: [
      { definition: csiServices().Identity, handlers: identityHandlers({ ready, probeTimeoutMs: 60_000 }) },
    ],
  });
  servers.push(server);
  await server.start();
  const client = new (csiClients().Identity)(`unix://${socket}`, credentials.createInsecure());
  clients.push(client);
  return { server, client };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}

describe('CsiServer with the Identity service', () => {
  it('answers GetPluginInfo, GetPluginCapabilities and Probe over a unix socket', async () => {
    const { client } = await serveIdentity(async () => true);
    const manifest = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(manifest.version).toBe(VERSION);
    expect(await call(client, 'GetPluginInfo')).toEqual({
      name: 'csi.tandem.dev',
      vendor_version: VERSION,
      manifest: {},
    });
    const capabilities = (await call(client, 'GetPluginCapabilities')) as { capabilities: unknown[] };
    expect(capabilities.capabilities).toEqual([
      { type: 'service', service: { type: 'CONTROLLER_SERVICE' } },
      { type: 'service', service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } },
      { type: 'volume_expansion', volume_expansion: { type: 'ONLINE' } },
    ]);
    expect(await call(client, 'Probe')).toEqual({ ready: { value: true } });
    expect((await stat(socket)).mode & 0o777).toBe(0o660);
  });

  it('reports not ready when the readiness check says no or fails', async () => {
    let answer: () => Promise<boolean> = async () => false;
    const { client } = await serveIdentity(() => answer());
    expect(await call(client, 'Probe')).toEqual({ ready: { value: false } });
    answer = async () => {
      throw new Error('API server unreachable');
    };
    expect(await call(client, 'Probe')).toEqual({ ready: { value: false } });
    answer = async () => true;
    expect(await call(client, 'Probe')).toEqual({ ready: { value: true } });
  });

  it('answers UNIMPLEMENTED for a method of a served service that has no handler', async () => {
    const server = new CsiServer({
      endpoint: socket,
      logger: silentLogger(),
      services: [{ definition: csiServices().Node, handlers: {} }],
    });
    servers.push(server);
    await server.start();
    const client = new (csiClients().Node)(`unix://${socket}`, credentials.createInsecure());
    clients.push(client);
    await expect(call(client, 'NodeGetInfo')).rejects.toMatchObject({ code: status.UNIMPLEMENTED });
  });

  it('replaces a stale socket file but not a live socket or another file', async () => {
    // A socket file nobody listens on: bind, move the file away, close.
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(join(dir, 'tmp.sock'), resolve));
    await rename(join(dir, 'tmp.sock'), socket);
    await new Promise<void>((resolve) => listener.close(() => resolve()));
    const { client } = await serveIdentity(async () => true);
    expect(await call(client, 'Probe')).toEqual({ ready: { value: true } });

    const second = new CsiServer({ endpoint: socket, logger: silentLogger(), services: [] });
    await expect(second.start()).rejects.toThrow(`another process is serving on ${socket}`);

    const file = join(dir, 'not-a-socket');
    await writeFile(file, 'keep me');
    const third = new CsiServer({ endpoint: file, logger: silentLogger(), services: [] });
    await expect(third.start()).rejects.toThrow('is not a socket');
    expect(await readFile(file, 'utf8')).toBe('keep me');
  });

  it('stop() lets a call in flight finish within the grace period', async () => {
    const gate = deferred<boolean>();
    const { server, client } = await serveIdentity(() => gate.promise);
    const probe = call(client, 'Probe');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const stopped = server.stop(10_000);
    setTimeout(() => gate.resolve(true), 50);
    expect(await probe).toEqual({ ready: { value: true } });
    await stopped;
    await expect(stat(socket)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('stop() cuts off a call still running at the end of the grace period', async () => {
    const gate = deferred<boolean>();
    const { server, client } = await serveIdentity(() => gate.promise);
    const probe = call(client, 'Probe');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await server.stop(200);
    expect(Date.now() - started).toBeLessThan(2000);
    const err = (await probe.then(
      () => undefined,
      (e: ServiceError) => e,
    )) as ServiceError;
    expect([status.UNAVAILABLE, status.CANCELLED, status.INTERNAL]).toContain(err.code);
    await expect(stat(socket)).rejects.toMatchObject({ code: 'ENOENT' });
    gate.resolve(true);
  });
});
