import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { sweepStaleNetworks } from '../../lab/netns.js';
import { packageRoot } from '../../lib/paths.js';
import { exitOf, waitForOutput } from '../harness/cli-process.js';

/** A separate process that creates a simulated network, prints its namespaces and waits. */
function networkOwner(): ChildProcessWithoutNullStreams {
  const netns = new URL('../../lab/netns.ts', import.meta.url).href;
  const script = `
    const { SimulatedNetwork } = await import(${JSON.stringify(netns)});
    const net = await SimulatedNetwork.create({ nodes: 2 });
    net.spawn(net.nodes[0], { name: 'sleep', command: 'sleep', args: ['300'] });
    console.log('NETNS ' + net.nodes.map((n) => n.netns).join(' '));
    setInterval(() => {}, 1000);`;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: packageRoot(),
  });
}

const namespacesOf = (out: string) => (/NETNS (.+)/.exec(out)?.[1] ?? '').trim().split(' ');
const exists = (netns: string) => existsSync(join('/run/netns', netns));

describe('simulated nodes are cleaned up when their owner is interrupted', () => {
  it('on SIGTERM, by the owner itself', async () => {
    const owner = networkOwner();
    const namespaces = namespacesOf(await waitForOutput(owner, 'NETNS', 30_000));
    expect(namespaces.every(exists)).toBe(true);
    owner.kill('SIGTERM');
    await exitOf(owner);
    expect(namespaces.some(exists)).toBe(false);
  });

  it('on SIGKILL, by the next sweep (processes inside die with their owner)', async () => {
    const owner = networkOwner();
    const namespaces = namespacesOf(await waitForOutput(owner, 'NETNS', 30_000));
    owner.kill('SIGKILL');
    await exitOf(owner);
    expect(namespaces.every(exists)).toBe(true); // nobody could clean up yet
    expect(sweepStaleNetworks()).toBeGreaterThanOrEqual(1);
    expect(namespaces.some(exists)).toBe(false);
  });
});
