/**
 * A manifest's `tandem` container as the CLI sees it: its env as Kubernetes sets it (fieldRefs
 * filled with fixed test values), its args with Kubernetes' $(VAR) expansion, parsed by the real
 * command tree with the action replaced so nothing starts. For cli/manifests.test.ts.
 */
import type { Command } from '@commander-js/extra-typings';
import type { V1Container } from '@kubernetes/client-node';
import { buildProgram } from '../../cli/program.js';
import { NAMESPACE } from './driver-manifests.js';

/** What Kubernetes puts in a container's environment for the fieldRefs these manifests use. */
export const FIELD_VALUES: Record<string, string> = {
  'spec.nodeName': 'node-a',
  'status.hostIP': '10.0.0.7',
  'metadata.namespace': NAMESPACE,
  'metadata.name': 'tandem-controller-abc12',
};

export function containerEnv(c: V1Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    const value = e.value ?? (field ? FIELD_VALUES[field] : undefined);
    if (value === undefined) throw new Error(`container ${c.name}: no test value for env ${e.name}`);
    env[e.name] = value;
  }
  return env;
}

/** Kubernetes' $(VAR) expansion of args from the container's env. */
export function expandArgs(args: string[], env: Record<string, string>, where: string): string[] {
  return args.map((arg) =>
    arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, name: string) => {
      const value = env[name];
      if (value === undefined) throw new Error(`${where}: $(${name}) names no env var of the container`);
      return value;
    }),
  );
}

export interface ParsedTandem {
  command: string;
  options: Record<string, unknown>;
  /** Env vars some option of the command reads. */
  optionEnv: Set<string>;
}

/**
 * Parses a tandem container's args with the real command tree, as the container would see them
 * (only its declared env), with the command's action replaced so nothing starts.
 */
export function parseTandem(c: V1Container, where: string): ParsedTandem {
  const env = containerEnv(c);
  const args = expandArgs([...(c.command ?? []), ...(c.args ?? [])], env, where);
  const errors: string[] = [];
  const program = buildProgram({ writeOut: () => {}, writeErr: (text) => errors.push(text) });
  const sub = (program.commands as unknown as Command[]).find((cmd) => cmd.name() === args[0]);
  if (!sub) throw new Error(`${where}: "${args[0]}" is not a tandem command`);
  let options: Record<string, unknown> | undefined;
  (sub as unknown as { action(fn: (opts: Record<string, unknown>) => void): void }).action((opts) => {
    options = opts;
  });
  const saved = process.env;
  process.env = env;
  try {
    program.parse(args, { from: 'user' });
  } catch (err) {
    throw new Error(
      `${where}: tandem ${args.join(' ')} is refused by the CLI: ${errors.join('') || String(err)}`,
    );
  } finally {
    process.env = saved;
  }
  if (!options) throw new Error(`${where}: the ${args[0]} action did not run`);
  const optionEnv = new Set(
    (sub.options as readonly { envVar?: string }[])
      .map((o) => o.envVar)
      .filter((v): v is string => v !== undefined),
  );
  return { command: args[0] ?? '', options, optionEnv };
}
