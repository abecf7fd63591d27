/**
 * One NFSv4.1 client step, run as its own process so a test can place it in a node's network
 * namespace (`nsenter --net=...`): the Service address then goes through that node's kube-proxy
 * rules, as a kernel client's mount on that node would. Argument: JSON
 * `{ host, port, ownerId, op: 'write' | 'read', path, data? (base64), graceMs? }`; prints one JSON
 * line: `{ ok, data? (base64), ms }` or `{ ok: false, error }`. Opens wait out a grace period.
 */
import { Nfs4Client, retryWhileInGrace } from '../../lib/nfs4/client.js';

interface Step {
  host: string;
  port: number;
  ownerId: string;
  op: 'write' | 'read';
  path: string;
  data?: string;
  graceMs?: number;
}

const step = JSON.parse(process.argv[2] ?? '{}') as Step;
const started = Date.now();
try {
  const client = await retryWhileInGrace(
    () =>
      Nfs4Client.connect({
        endpoint: { host: step.host, port: step.port },
        ownerId: step.ownerId,
        timeoutMs: 10_000,
      }),
    step.graceMs ?? 0,
  );
  try {
    const file = await retryWhileInGrace(
      () => client.open(step.path, step.op === 'write' ? { create: true } : { readOnly: true }),
      step.graceMs ?? 0,
    );
    let data: Buffer | undefined;
    if (step.op === 'write') await client.write(file, 0n, Buffer.from(step.data ?? '', 'base64'));
    else data = await client.readAll(file);
    await client.close(file);
    console.log(
      JSON.stringify({
        ok: true,
        ms: Date.now() - started,
        ...(data ? { data: data.toString('base64') } : {}),
      }),
    );
  } finally {
    await client.destroy().catch(() => client.abandon());
  }
} catch (err) {
  console.log(JSON.stringify({ ok: false, ms: Date.now() - started, error: (err as Error).message }));
}
