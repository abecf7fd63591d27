// Plays the kubelet against KubeletRegistration: a real grpc-js client on the unix socket, its
// service compiled from registration.proto (not from the descriptor the code serves), so the
// names and field numbers on the wire are checked as well as the behaviour.
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type Client,
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { CSI_DRIVER_NAME } from '../../lib/api/volume.js';
import { silentLogger } from '../../lib/log.js';
import { call } from '../../test/harness/grpc-unary.js';
import { KubeletRegistration, registrationSocketPath } from './registration.js';

const protoPath = join(dirname(fileURLToPath(import.meta.url)), 'registration.proto');
const Registration = (
  loadPackageDefinition(loadSync(protoPath, { keepCase: true, defaults: true }))
    .pluginregistration as GrpcObject
).Registration as ServiceClientConstructor;

const HOST_ENDPOINT = `/var/lib/kubelet/plugins/${CSI_DRIVER_NAME}/csi.sock`;

let dir: string;
const clients: Client[] = [];
const started: KubeletRegistration[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tandem-reg-'));
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const registration of started.splice(0)) await registration.stop();
  await rm(dir, { recursive: true, force: true });
});

async function register(onRefused: (error: string) => void = () => {}) {
  const registration = new KubeletRegistration({
    registrationDir: dir,
    kubeletEndpoint: HOST_ENDPOINT,
    logger: silentLogger(),
    onRefused,
  });
  started.push(registration);
  await registration.start();
  const kubelet = new Registration(`unix://${registration.socketPath}`, credentials.createInsecure());
  clients.push(kubelet);
  return { registration, kubelet };
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

describe('KubeletRegistration', () => {
  it('listens on <driver>-reg.sock and tells the kubelet what node-driver-registrar would', async () => {
    const { registration, kubelet } = await register();
    expect(registration.socketPath).toBe(join(dir, `${CSI_DRIVER_NAME}-reg.sock`));
    expect(registrationSocketPath(dir)).toBe(registration.socketPath);
    expect((await stat(registration.socketPath)).isSocket()).toBe(true);
    await expect(call(kubelet, 'GetInfo', {})).resolves.toEqual({
      type: 'CSIPlugin',
      name: CSI_DRIVER_NAME,
      endpoint: HOST_ENDPOINT,
      supported_versions: ['1.0.0'],
    });
    expect(registration.registered).toBe(false);
    // Not registered yet is healthy: the kubelet takes its time.
    await expect(registration.health()).resolves.toBe(true);
  });

  it('stays up when the kubelet registers the plugin', async () => {
    const refusals: string[] = [];
    const { registration, kubelet } = await register((error) => refusals.push(error));
    await expect(call(kubelet, 'NotifyRegistrationStatus', { plugin_registered: true })).resolves.toEqual({});
    expect(registration.registered).toBe(true);
    await new Promise((resolve) => setImmediate(resolve));
    expect(refusals).toEqual([]);
    await expect(registration.health()).resolves.toBe(true);
    await expect(call(kubelet, 'GetInfo', {})).resolves.toMatchObject({ name: CSI_DRIVER_NAME });
  });

  it("reports the kubelet's refusal, once, after answering it", async () => {
    let refused!: (error: string) => void;
    const refusal = new Promise<string>((resolve) => {
      refused = resolve;
    });
    const refusals: string[] = [];
    const { registration, kubelet } = await register((error) => {
      refusals.push(error);
      refused(error);
    });
    const error = 'RegisterPlugin error -- plugin registration failed with err: NodeGetInfo: timed out';
    // proto3 sends no `false`: the refusal arrives without plugin_registered.
    await expect(
      call(kubelet, 'NotifyRegistrationStatus', { plugin_registered: false, error }),
    ).resolves.toEqual({});
    await expect(refusal).resolves.toBe(error);
    expect(registration.registered).toBe(false);
    await expect(registration.health()).resolves.toBe(`the kubelet refused the plugin: ${error}`);
    await call(kubelet, 'NotifyRegistrationStatus', { error: 'again' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(refusals).toEqual([error]);
  });

  it('replaces a stale socket nobody serves, and refuses one somebody does', async () => {
    const path = registrationSocketPath(dir);
    // A socket file nobody listens on, as a killed instance leaves it: bind, move the file, close.
    const stale: Server = createServer();
    await new Promise<void>((resolve) => stale.listen(join(dir, 'tmp.sock'), resolve));
    await rename(join(dir, 'tmp.sock'), path);
    await new Promise<void>((resolve) => stale.close(() => resolve()));
    expect((await stat(path)).isSocket()).toBe(true);
    const { kubelet } = await register();
    await expect(call(kubelet, 'GetInfo', {})).resolves.toMatchObject({ name: CSI_DRIVER_NAME });

    const second = new KubeletRegistration({
      registrationDir: dir,
      kubeletEndpoint: HOST_ENDPOINT,
      logger: silentLogger(),
      onRefused: () => {},
    });
    await expect(second.start()).rejects.toThrow(/another process is serving/);
  });

  it('fails its health check when the socket is gone, and removes the socket on stop', async () => {
    const { registration } = await register();
    await rm(registration.socketPath);
    await expect(registration.health()).resolves.toMatch(/registration socket .* is gone/);

    const fresh = await mkdtemp(join(tmpdir(), 'tandem-reg-'));
    try {
      const other = new KubeletRegistration({
        registrationDir: fresh,
        kubeletEndpoint: HOST_ENDPOINT,
        logger: silentLogger(),
        onRefused: () => {},
      });
      await other.start();
      expect(await exists(other.socketPath)).toBe(true);
      await other.stop();
      expect(await exists(other.socketPath)).toBe(false);
      await expect(other.health()).resolves.toBe('the registration socket is not served');
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });

  it('refuses to start when the registration directory is not there', async () => {
    const missing = join(dir, 'plugins_registry');
    const registration = new KubeletRegistration({
      registrationDir: missing,
      kubeletEndpoint: HOST_ENDPOINT,
      logger: silentLogger(),
      onRefused: () => {},
    });
    await expect(registration.start()).rejects.toThrow(/registration directory .* does not exist/);
    await mkdir(missing);
    await registration.start();
    await registration.stop();
  });
});
