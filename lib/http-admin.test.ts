import { Registry } from 'prom-client';
import { type AdminServer, type HealthCheck, serveAdmin } from './http-admin.js';
import { silentLogger } from './log.js';

const servers: AdminServer[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

async function serve(options: { healthy?: HealthCheck; healthTimeoutMs?: number } = {}) {
  const server = await serveAdmin(new Registry(), '127.0.0.1', 0, {}, { ...options, logger: silentLogger() });
  servers.push(server);
  return async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${server.port}${path}`);
    return { status: res.status, body: await res.text() };
  };
}

describe('serveAdmin /healthz', () => {
  it('answers ok without a health check, as before', async () => {
    const get = await serve();
    expect(await get('/healthz')).toEqual({ status: 200, body: 'ok\n' });
  });

  it('answers ok while the check holds and 503 with its reason when it does not', async () => {
    let verdict: true | string = true;
    const get = await serve({ healthy: async () => verdict });
    expect(await get('/healthz')).toEqual({ status: 200, body: 'ok\n' });
    verdict = 'the registration socket is gone';
    expect(await get('/healthz')).toEqual({ status: 503, body: 'the registration socket is gone\n' });
    verdict = true;
    expect((await get('/healthz')).status).toBe(200);
  });

  it('answers 503 with the message of a check that throws', async () => {
    const get = await serve({
      healthy: async () => {
        throw new Error('missing tools: mkfs.xfs');
      },
    });
    expect(await get('/healthz')).toEqual({ status: 503, body: 'missing tools: mkfs.xfs\n' });
  });

  it('answers 503 when the check does not finish in time', async () => {
    let release = () => {};
    const get = await serve({
      healthy: () =>
        new Promise<true>((resolve) => {
          release = () => resolve(true);
        }),
      healthTimeoutMs: 50,
    });
    expect(await get('/healthz')).toEqual({
      status: 503,
      body: 'health check did not finish within 50 ms\n',
    });
    release();
  });

  it('keeps /metrics and unknown paths as they were', async () => {
    const get = await serve({ healthy: async () => 'down' });
    expect((await get('/metrics')).status).toBe(200);
    expect((await get('/nowhere')).status).toBe(404);
  });
});
