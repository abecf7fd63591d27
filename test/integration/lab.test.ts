import { existsSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toolPath } from '../../lab/tools.js';
import { run } from '../../lib/exec.js';
import { packageRoot } from '../../lib/paths.js';
import { exitOf, spawnTandem, waitForOutput } from '../harness/cli-process.js';

describe('tandem lab (the quick start main job)', () => {
  it('starts a real control plane and simulated nodes, is reachable with kubectl, and leaves nothing after Ctrl-C', async () => {
    const stateDir = join(await mkdtemp(join(tmpdir(), 'lab-test-')), 'state');
    const lab = spawnTandem(['lab', '--nodes', '2', '--state-dir', stateDir, '--exit-after', '5m']);
    try {
      const banner = await waitForOutput(lab, 'Stopping by itself', 120_000);
      const kubeconfig = /export KUBECONFIG=(\S+)/.exec(banner)?.[1];
      expect(kubeconfig).toBe(join(stateDir, 'control-plane', 'kubeconfig'));
      const netns = [...banner.matchAll(/ip netns exec (\S+) <command>/g)].map((m) => m[1] ?? '');
      expect(netns).toHaveLength(2);

      const env = { ...process.env, KUBECONFIG: kubeconfig };
      const nodes = JSON.parse(
        (await run(toolPath('kubectl'), ['get', 'nodes', '-o', 'json'], { env })).stdout,
      ) as {
        items: { metadata: { name: string }; status: { addresses: { type: string; address: string }[] } }[];
      };
      expect(nodes.items.map((n) => n.metadata.name).sort()).toEqual(['node-1', 'node-2']);
      const address = nodes.items[0]?.status.addresses.find((a) => a.type === 'InternalIP')?.address ?? '';
      expect(banner).toContain(address);

      const crds = await run(toolPath('kubectl'), ['get', 'volumes.tandem.dev'], { env, allowFailure: true });
      expect(crds.code).toBe(0);

      // From inside a simulated node, the apiserver is reachable at the bridge address.
      const server = /control plane\s+(https:\/\/\S+)/.exec(banner)?.[1] ?? '';
      const reach = await run(
        'ip',
        [
          'netns',
          'exec',
          netns[0] ?? '',
          toolPath('kubectl'),
          '--kubeconfig',
          kubeconfig ?? '',
          'get',
          'nodes',
          '-o',
          'name',
        ],
        {
          timeoutMs: 20_000,
        },
      );
      expect(server).toMatch(/^https:\/\/198\.18\.\d+\.1:\d+$/);
      expect(reach.stdout).toContain('node/node-1');

      // The lab's admission webhook: the example's class is admitted with defaults, its claim refused.
      const example = join(packageRoot(), 'manifests', 'examples', 'lab-rejected-claim.yaml');
      const created = await run(toolPath('kubectl'), ['create', '-f', example], { env, allowFailure: true });
      expect(created.code).not.toBe(0);
      expect(created.stderr).toMatch(/denied the request: .*needs a StorageClass with migratable: "true"/);
      const fsType = await run(
        toolPath('kubectl'),
        ['get', 'storageclass', 'tandem-lab-plain', '-o', 'jsonpath={.parameters.fsType}'],
        { env },
      );
      expect(fsType.stdout).toBe('ext4');

      // The data plane: the demo volume's engine answers a real NBD client, with 2 replicas.
      const uri = /nbdinfo '(\S+)'/.exec(banner)?.[1] ?? '';
      const info = await run('nbdinfo', ['--json', uri], { timeoutMs: 20_000 });
      expect(
        (JSON.parse(info.stdout) as { exports: { 'export-size': number }[] }).exports[0]?.['export-size'],
      ).toBe(256 * 1024 * 1024);
      const volume = JSON.parse(
        (await run(toolPath('kubectl'), ['get', 'volumes.tandem.dev', 'demo-disk', '-o', 'json'], { env }))
          .stdout,
      ) as { status: { replicas: { mode: string }[]; engines: { node: string }[] } };
      expect(volume.status.replicas.map((r) => r.mode)).toEqual(['ReadWrite', 'ReadWrite']);
      expect(volume.status.engines.map((e) => e.node)).toEqual(['node-1']);

      // The CSI driver: demo-fs was provisioned, published and mounted through it; it takes files.
      const mountPath = /mounted through it at:\n\s+(\S+)/.exec(banner)?.[1] ?? '';
      expect(mountPath).toBe(join(stateDir, 'csi', 'demo-fs', 'mount'));
      await writeFile(join(mountPath, 'hello.txt'), 'hello from the lab\n');
      await run('sync', ['-f', join(mountPath, 'hello.txt')]);
      expect(await readFile(join(mountPath, 'hello.txt'), 'utf8')).toBe('hello from the lab\n');
      const mounted = await readFile('/proc/self/mountinfo', 'utf8');
      expect(mounted).toContain(` ${mountPath} `);
      const demoFs = JSON.parse(
        (await run(toolPath('kubectl'), ['get', 'volumes.tandem.dev', 'demo-fs', '-o', 'json'], { env }))
          .stdout,
      ) as { spec: { engines: { node: string }[] }; status: { replicas: { node: string; mode: string }[] } };
      expect(demoFs.spec.engines).toEqual([{ node: 'node-1' }]);
      expect(demoFs.status.replicas.map((r) => r.node).sort()).toEqual(['node-1', 'node-2']);

      lab.kill('SIGINT');
      expect(await exitOf(lab)).toBe(0);
      expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(stateDir);
      for (const ns of netns) expect(existsSync(`/run/netns/${ns}`)).toBe(false);
      expect(existsSync(stateDir)).toBe(false);
      const leftovers = await run('pgrep', ['-f', stateDir], { allowFailure: true });
      expect(leftovers.stdout).toBe('');
    } finally {
      if (lab.exitCode === null) lab.kill('SIGKILL');
    }
  });

  it('refuses a second lab on the same state folder', async () => {
    const stateDir = join(await mkdtemp(join(tmpdir(), 'lab-test-')), 'state');
    const first = spawnTandem(['lab', '--nodes', '1', '--state-dir', stateDir, '--exit-after', '5m']);
    try {
      await waitForOutput(first, 'Stopping by itself', 60_000);
      const second = spawnTandem(['lab', '--nodes', '1', '--state-dir', stateDir]);
      let stderr = '';
      second.stderr.on('data', (d: Buffer) => (stderr += d));
      expect(await exitOf(second)).toBe(1);
      expect(stderr).toMatch(/a lab is already running from .* \(pid \d+\)/);
    } finally {
      first.kill('SIGTERM');
      expect(await exitOf(first)).toBe(0);
    }
  });
});
