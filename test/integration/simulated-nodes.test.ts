import { existsSync } from 'node:fs';
import { SimulatedNetwork, type SimulatedNode } from '../../lab/netns.js';
import { run } from '../../lib/exec.js';

// A tiny TCP echo server and client, run with the same node binary inside the namespaces.
const SERVER = `require('node:net').createServer((s) => s.on('data', (d) => s.end('pong:' + d))).listen(7070, process.argv[1], () => console.log('listening'))`;
const CLIENT = `const s = require('node:net').connect({ host: process.argv[1], port: 7070, timeout: 1500 });
s.on('connect', () => s.write('ping')); s.on('data', (d) => { console.log(String(d)); process.exit(0); });
s.on('timeout', () => { console.error('timeout'); process.exit(3); }); s.on('error', (e) => { console.error(e.code); process.exit(4); });`;

describe('simulated nodes (network namespaces on a bridge)', () => {
  let network: SimulatedNetwork;
  let a: SimulatedNode;
  let b: SimulatedNode;

  beforeAll(async () => {
    network = await SimulatedNetwork.create({ nodes: 2 });
    [a, b] = [network.node('node-1'), network.node('node-2')];
  });

  afterAll(async () => {
    await network?.destroy();
  });

  const ping = async () => {
    const result = await network.exec(b, process.execPath, ['-e', CLIENT, a.address], {
      allowFailure: true,
      timeoutMs: 5_000,
    });
    return result;
  };

  it('gives every node its own namespace and address', async () => {
    expect(new Set(network.nodes.map((n) => n.address)).size).toBe(2);
    for (const node of network.nodes) {
      expect(existsSync(`/run/netns/${node.netns}`)).toBe(true);
      const { stdout } = await network.exec(node, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      expect(stdout).toContain(`${node.address}/24`);
    }
  });

  it('lets two processes on two nodes talk over TCP, not after the link is cut, and again after restore', async () => {
    const server = network.spawn(a, {
      name: 'echo',
      command: process.execPath,
      args: ['-e', SERVER, a.address],
    });
    // Wait until the server listens.
    for (let i = 0; i < 50 && (await ping()).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));

    const before = await ping();
    expect(before.code).toBe(0);
    expect(before.stdout.trim()).toBe('pong:ping');

    await network.cutLink(a);
    const during = await ping();
    expect(during.code).not.toBe(0);
    expect(server.running).toBe(true);

    await network.restoreLink(a);
    let after = await ping();
    for (let i = 0; i < 20 && after.code !== 0; i++) after = await ping(); // the link needs a moment to come up
    expect(after.stdout.trim()).toBe('pong:ping');
  });

  it('does not reach the node from the root namespace through loopback (isolation)', async () => {
    const result = await run(process.execPath, ['-e', CLIENT, '127.0.0.1'], {
      allowFailure: true,
      timeoutMs: 5_000,
    });
    expect(result.code).not.toBe(0);
  });

  it('removes namespaces, links and processes on destroy', async () => {
    const extra = await SimulatedNetwork.create({ nodes: 1 });
    const node = extra.nodes[0] as SimulatedNode;
    const sleeper = extra.spawn(node, { name: 'sleep', command: 'sleep', args: ['600'] });
    expect(sleeper.running).toBe(true);
    await extra.destroy();
    expect(sleeper.running).toBe(false);
    expect(existsSync(`/run/netns/${node.netns}`)).toBe(false);
    const links = await run('ip', ['-o', 'link', 'show']);
    expect(links.stdout).not.toContain(node.hostVeth);
    expect(links.stdout).not.toContain(extra.bridge);
  });
});
