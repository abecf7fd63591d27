import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toolPath } from '../../lab/tools.js';
import { run } from '../../lib/exec.js';
import { exitOf, spawnTandem, waitForOutput } from '../harness/cli-process.js';

/**
 * `tandem lab` as a user runs it, on one real node (real-nodes.e2e.ts runs three nodes through
 * the same startLab, without the demo). Here: the banner, a refused second lab
 * on the same folder, and the stop a user forces with a second Ctrl-C, which must still leave
 * nothing behind.
 */
describe('tandem lab (the quick start main job)', () => {
  it('starts real nodes with Tandem installed, refuses a second lab on its folder, and a forced stop leaves nothing', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'lab-test-'));
    const stateDir = join(parent, 'state');
    const lab = spawnTandem([
      'lab',
      '--nodes',
      '1',
      '--no-demo',
      '--state-dir',
      stateDir,
      '--exit-after',
      '10m',
    ]);
    let output = '';
    lab.stdout.on('data', (d: Buffer) => (output += d));
    lab.stderr.on('data', (d: Buffer) => (output += d));
    try {
      const banner = await waitForOutput(lab, 'Stopping by itself', 600_000);
      const kubeconfig = /export KUBECONFIG=(\S+)/.exec(banner)?.[1] ?? '';
      expect(kubeconfig).toBe(join(stateDir, 'control-plane', 'kubeconfig'));
      const netns = /--net=\/run\/netns\/(\S+)/.exec(banner)?.[1] ?? '';
      expect(netns).toMatch(/^tandem-[0-9a-f]{4}-node-1$/);
      const env = { ...process.env, KUBECONFIG: kubeconfig };
      const kubectl = async (...args: string[]) => (await run(toolPath('kubectl'), args, { env })).stdout;
      expect(
        await kubectl(
          'get',
          'nodes',
          '-o',
          'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}',
        ),
      ).toBe('True');
      const phases = (
        await kubectl('-n', 'tandem-system', 'get', 'pods', '-o', 'jsonpath={.items[*].status.phase}')
      ).split(' ');
      expect(phases.length).toBeGreaterThanOrEqual(5);
      expect(new Set(phases)).toEqual(new Set(['Running']));

      const second = spawnTandem(['lab', '--nodes', '1', '--state-dir', stateDir]);
      let stderr = '';
      second.stderr.on('data', (d: Buffer) => (stderr += d));
      expect(await exitOf(second)).toBe(1);
      expect(stderr).toMatch(/a lab is already running from .* \(pid \d+\)/);

      const stopping = waitForOutput(lab, 'press Ctrl-C again to force', 30_000);
      lab.kill('SIGINT');
      await stopping;
      lab.kill('SIGINT');
      const code = await exitOf(lab);
      expect({ code, signal: lab.signalCode, output }).toMatchObject({ code: 130, signal: null });
      expect(existsSync(`/run/netns/${netns}`)).toBe(false);
      const id = netns.split('-')[1] ?? '';
      expect(readdirSync('/sys/fs/cgroup/pids').filter((d) => d.startsWith(`tandem-${id}-`))).toEqual([]);
      const leftovers = await run('pgrep', ['-af', stateDir], { allowFailure: true });
      expect(leftovers.stdout).toBe('');
    } finally {
      if (lab.exitCode === null) lab.kill('SIGKILL');
      // A forced stop leaves the state folder (certificates, logs) for a look; the test's is removed.
      await rm(parent, { recursive: true, force: true });
    }
  }, 900_000);
});
