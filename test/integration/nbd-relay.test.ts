/**
 * A data-plane restart under a writing client, through `tandem nbd-relay` (issue 16): fio writes
 * with crc32c verification through the relay while the data plane that hosts the volume's engine
 * is SIGKILLed and started again, and the engine with it at the same socket (what the data
 * plane's reconciler does after a restart; here the test plays the reconciler's part). fio must
 * see no error and read every block back intact; the pause it saw is printed.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { canConnect, waitFor } from '../../lib/readiness.js';
import { spawnTandem } from '../harness/cli-process.js';
import { fioJobs, fioVerify } from '../harness/fio.js';
import { SimDataPlane } from '../harness/sim-dataplane.js';

jest.setTimeout(240_000);

const SIZE = 64 * 1024 * 1024;
const ENGINE = { requestTimeoutMs: 1500, rebuildIntervalMs: 500 };

describe('the NBD relay across a data-plane restart', () => {
  let sim: SimDataPlane;
  let relay: ChildProcessWithoutNullStreams | undefined;
  let relayOutput = '';

  beforeAll(async () => {
    sim = await SimDataPlane.start({ nodes: 3, replicas: 3, sizeBytes: SIZE });
  }, 180_000);

  afterAll(async () => {
    relay?.kill('SIGTERM');
    await sim?.destroy();
  });

  it('keeps a writing client going through a SIGKILL of the engine host: no error, every block intact', async () => {
    const node1 = sim.network.node('node-1');
    const engineSocket = join(sim.dir, 'engine-node-1.sock');
    await sim.startHostedEngine(node1, { ...ENGINE, nbdSocket: engineSocket });
    const relaySocket = join(sim.dir, 'relay.sock');
    relay = spawnTandem([
      'nbd-relay',
      '--upstream',
      engineSocket,
      '--export',
      sim.volume,
      '--listen',
      relaySocket,
    ]);
    // The relay logs (pino) to stderr.
    relay.stderr.on('data', (d: Buffer) => {
      relayOutput += d;
    });
    await waitFor('the relay to serve', () => canConnect({ path: relaySocket }), 30_000);

    let finished = false;
    const workload = fioVerify(`nbd+unix:///${sim.volume}?socket=${relaySocket}`, {
      size: '64M',
      cwd: sim.dir,
      timeoutMs: 180_000,
    }).finally(() => {
      finished = true;
    });
    await sleep(800);
    const killedAt = Date.now();
    await sim.replicaServices.get('node-1')?.kill();
    expect(finished).toBe(false); // the data plane died under load, not after it
    await sim.startReplicaServer(node1);
    await sim.startHostedEngine(node1, { ...ENGINE, nbdSocket: engineSocket });
    const engineBackMs = Date.now() - killedAt;
    const fio = await workload;
    expect(fio.stderr).not.toMatch(/verify: bad|error/i);
    expect(fio.code).toBe(0);
    const [job] = fioJobs(fio.stdout) as (ReturnType<typeof fioJobs>[number] & {
      write: { clat_ns?: { max?: number } };
    })[];
    expect(job?.error).toBe(0);
    expect(job?.write.io_bytes).toBe(SIZE);
    const pauses = [...relayOutput.matchAll(/"pauseMs":(\d+)/g)].map((m) => Number(m[1]));
    expect(pauses.length).toBeGreaterThanOrEqual(1);
    console.log(
      `data plane SIGKILLed under fio: engine back after ${engineBackMs} ms, relay outage ${pauses.join(', ')} ms, ` +
        `longest write ${((job?.write.clat_ns?.max ?? 0) / 1e6).toFixed(0)} ms, 0 errors`,
    );
  });
});
