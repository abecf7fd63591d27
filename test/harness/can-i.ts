/**
 * `kubectl auth can-i --as=system:serviceaccount:tandem-system:<account>` against the test
 * cluster: the apiserver's own RBAC authorizer (resourceNames and namespaces included) answering
 * for one of Tandem's ServiceAccounts. Used by the RBAC suites of the components.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { toolPath } from '../../lab/tools.js';
import { TEST_KUBECONFIG_ENV } from './cluster.js';
import { NAMESPACE, type RightCase } from './driver-manifests.js';

const run = promisify(execFile);

/** "yes", "no", or what went wrong instead. */
export async function canI(account: string, { verb, right }: RightCase, cacheDir: string): Promise<string> {
  const [resource, subresource] = right.resource.split('/');
  const target = `${resource}${right.group ? `.${right.group}` : ''}${right.name ? `/${right.name}` : ''}`;
  const args = [
    'auth',
    'can-i',
    verb,
    target,
    `--as=system:serviceaccount:${NAMESPACE}:${account}`,
    `--kubeconfig=${process.env[TEST_KUBECONFIG_ENV]}`,
    // kubectl's discovery cache, kept out of the home directory
    `--cache-dir=${cacheDir}`,
    // No namespace: the right is wanted (or refused) in every namespace.
    right.namespace ? `--namespace=${right.namespace}` : '--all-namespaces',
    ...(subresource ? [`--subresource=${subresource}`] : []),
  ];
  // "no" exits 1; only a yes/no answer on stdout counts, anything else is reported as is. A
  // resource discovery does not know is asked about under a wrong name (its group dropped), and
  // the "no" that comes back means nothing: that counts as no answer.
  const { stdout, stderr } = await run(toolPath('kubectl'), args, { timeout: 20_000 }).catch(
    (err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
  );
  const answer = stdout.trim().split('\n').at(-1)?.trim() ?? '';
  const unmapped = stderr.includes("doesn't have a resource type");
  return (answer === 'yes' || answer === 'no') && !unmapped
    ? answer
    : `unanswered: ${stdout}${stderr}`.trim();
}

/** Every case's `label: answer`, a few kubectl processes at a time (shared 2-core machines). */
export async function answersAs(account: string, cases: RightCase[], cacheDir: string): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < cases.length; i += 4) {
    const batch = cases.slice(i, i + 4);
    const got = await Promise.all(batch.map((c) => canI(account, c, cacheDir)));
    out.push(...batch.map((c, j) => `${c.label}: ${got[j]}`));
  }
  return out;
}
