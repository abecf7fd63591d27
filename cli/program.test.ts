import { CommanderError } from '@commander-js/extra-typings';
import { buildProgram } from './program.js';

/** Runs the CLI in-process; returns what it wrote to stderr and how it ended. */
async function tandem(args: string[], env: Record<string, string> = {}) {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  let stderr = '';
  let stdout = '';
  try {
    await buildProgram({ writeErr: (t) => (stderr += t), writeOut: (t) => (stdout += t) }).parseAsync(args, {
      from: 'user',
    });
    return { ok: true, stderr, stdout, error: undefined };
  } catch (error) {
    return { ok: false, stderr, stdout, error: error as Error };
  } finally {
    process.env = saved;
  }
}

describe('tandem CLI', () => {
  it('has a subcommand per component, each with --help', async () => {
    const names = buildProgram().commands.map((c) => c.name());
    expect(names).toEqual([
      'controller',
      'node',
      'dataplane',
      'engine',
      'nbd-relay',
      'replica',
      'scrub',
      'webhook',
      'migrator',
      'share-manager',
      'lab',
      'lab-migrate',
      'status',
    ]);
    for (const name of names) {
      const result = await tandem([name, '--help']);
      expect(result.error).toBeInstanceOf(CommanderError);
      expect((result.error as CommanderError).exitCode).toBe(0);
      expect(result.stdout).toContain(`Usage: tandem ${name}`);
    }
  });

  const refused: [string, string[], Record<string, string>, RegExp][] = [
    [
      'a volume name that could leave the data directory',
      ['replica', 'create', '--volume', '../etc', '--size', '1Gi', '--credential-file', '/x'],
      {},
      /invalid volume name/,
    ],
    [
      'a size that is not a multiple of 4096',
      ['replica', 'create', '--volume', 'v', '--size', '1000', '--credential-file', '/x'],
      {},
      /not a size/,
    ],
    [
      'an engine without its volume',
      ['engine', '--node-id', 'n1', '--credential-file', '/x'],
      {},
      /required option '--volume <name>'/,
    ],
    [
      'a replica timeout below 100 ms',
      ['engine', '--node-id', 'n1', '--volume', 'v', '--credential-file', '/x', '--request-timeout', '5ms'],
      {},
      /request-timeout|between|at least/,
    ],
    ['an unknown command', ['bogus'], {}, /unknown command 'bogus'/],
    ['an unknown flag', ['status', '--colour'], {}, /unknown option '--colour'/],
    ['a missing mandatory flag', ['node'], {}, /required option '--node-id <name>' not specified/],
    ['an invalid node name', ['node', '--node-id', 'Node_1'], {}, /not a valid node name/],
    [
      'an invalid node name from the environment',
      ['dataplane'],
      { NODE_NAME: 'UPPER' },
      /from env 'NODE_NAME' is invalid/,
    ],
    ['a malformed address', ['dataplane', '--node-id', 'n1', '--listen', '9500'], {}, /not host:port/],
    ['a relative CSI socket', ['controller', '--csi-endpoint', 'csi.sock'], {}, /absolute unix socket path/],
    [
      'an unknown log level',
      ['migrator', '--log-level', 'loud'],
      {},
      /Allowed choices are fatal, error, warn/,
    ],
    ['a log level from the environment', ['migrator'], { TANDEM_LOG_LEVEL: 'verbose' }, /Allowed choices/],
    ['too many lab nodes', ['lab', '--nodes', '9'], {}, /allowed: 1 to 6/],
    ['a migration timeout too short', ['migrator', '--migration-timeout', '1s'], {}, /allowed: 10s to 1h/],
    ['a lab duration without unit', ['lab', '--exit-after', '30'], {}, /use a number with ms, s, m or h/],
    ['an unknown output format', ['status', '-o', 'yaml'], {}, /use one of: table, json/],
    ['an extra argument', ['status', 'extra'], {}, /too many arguments/],
    [
      'a VM name that is no Kubernetes name',
      ['lab-migrate', '--kubeconfig', 'k', '--vm', 'Bad_VM'],
      {},
      /not a Kubernetes name/,
    ],
    ['lab-migrate without the kubeconfig', ['lab-migrate'], {}, /required option '--kubeconfig <path>'/],
  ];

  it.each(refused)(
    'refuses %s with a message that says what is allowed',
    async (_what, args, env, message) => {
      const result = await tandem(args, env);
      expect(result.ok).toBe(false);
      expect(result.error).toBeInstanceOf(CommanderError);
      expect((result.error as CommanderError).exitCode).not.toBe(0);
      expect(result.stderr).toMatch(message);
    },
  );

  it('refuses a share manager without the address its clients reach', async () => {
    const result = await tandem([
      'share-manager',
      '--volume',
      'pvc-1',
      '--node-id',
      'n1',
      '--bind-address',
      'pod-ip',
    ]);
    expect(result.ok).toBe(false);
    expect(result.stderr).toMatch(/"pod-ip" is not an IP address/);
  });
});
