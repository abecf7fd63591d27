import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { kubectlFor } from '../../lab/cluster.js';
import { LabKubeVirt, type MigrationOutcome } from '../../lab/vm/kubevirt-stand-in.js';
import { volumeOfClaim } from '../../lab/volumes.js';
import { isDnsName, nodeName } from '../../lib/config.js';
import { UsageError } from '../../lib/errors.js';
import { waitFor } from '../../lib/readiness.js';

/**
 * `tandem lab-migrate`: live-migrates a VM of the lab (the demo VM by default) to another node
 * and, with --and-back, back again, the way the lab's KubeVirt stand-in does it
 * (lab/vm/kubevirt-stand-in.ts), and prints what QEMU and Tandem's migrator reported.
 */
export function labMigrateCommand() {
  return new Command('lab-migrate')
    .description(
      "live-migrate a VM of the running lab to another node (and back), as KubeVirt's controllers would",
    )
    .requiredOption('--kubeconfig <path>', "the lab's kubeconfig (the lab prints it)")
    .addOption(new Option('--namespace <name>', "the VM's namespace").default('demo').argParser(dnsLabel))
    .addOption(new Option('--vm <name>', 'the VirtualMachineInstance').default('demo-vm').argParser(dnsLabel))
    .addOption(
      new Option('--to <node>', 'target node (default: the next node that does not run it)').argParser(
        nodeName,
      ),
    )
    .option('--and-back', 'migrate back to the node it ran on afterwards')
    .action(async (options) => {
      const cluster = { kubeconfigPath: options.kubeconfig, kubectl: kubectlFor(options.kubeconfig) };
      const kubevirt = new LabKubeVirt(cluster);
      const start = await kubevirt.locate(options.namespace, options.vm);
      const nodes = (
        await cluster.kubectl(['get', 'nodes', '-o', 'jsonpath={.items[*].metadata.name}'])
      ).stdout
        .trim()
        .split(/\s+/);
      const target = options.to ?? nodes.find((n) => n !== start.node);
      if (!target || !nodes.includes(target))
        throw new UsageError(
          `no node to migrate to: the lab has ${nodes.join(', ')}; ${options.vm} runs on ${start.node}`,
        );
      const hops = options.andBack ? [target, start.node] : [target];
      for (const hop of hops) {
        process.stdout.write(`Migrating ${options.namespace}/${options.vm} to ${hop}...\n`);
        const outcome = await kubevirt.migrate(options.namespace, options.vm, hop);
        process.stdout.write(`${describe(outcome)}\n`);
        process.stdout.write(`${await decision(kubevirt, options.namespace, outcome)}\n`);
        if (!outcome.succeeded) {
          process.exitCode = 1;
          return;
        }
      }
      const now = await kubevirt.locate(options.namespace, options.vm);
      process.stdout.write(`The guest's console: kubectl -n ${now.namespace} logs -f ${now.pod}\n`);
    });
}

function dnsLabel(value: string): string {
  if (!isDnsName(value) || value.includes('.'))
    throw new InvalidArgumentError(
      `"${value}" is not a Kubernetes name; use lower-case letters, digits and '-'.`,
    );
  return value;
}

function describe(o: MigrationOutcome): string {
  if (!o.succeeded)
    return `  QEMU: migration ${o.vmim} failed (${o.failure}); the guest keeps running on ${o.source.node}`;
  return (
    `  QEMU: ${o.vmim} completed in ${o.totalMs ?? '?'} ms, guest paused ${o.downtimeMs ?? '?'} ms for the switch; ` +
    `target pod ${o.target.pod} on ${o.target.node} ran ${o.targetPodMs} ms after the VMIM (attach, stage, publish)`
  );
}

/** What Tandem's migrator decided for the claim's volume, once it has. */
async function decision(kubevirt: LabKubeVirt, namespace: string, o: MigrationOutcome): Promise<string> {
  const { cluster } = kubevirt;
  const claim = await kubevirt.claimOf(namespace, o.source.vm);
  const volume = await volumeOfClaim(kubevirt.cluster, namespace, claim);
  let words = '';
  await waitFor(
    `the migrator's decision for ${volume}`,
    async () => {
      const status = JSON.parse(
        (await cluster.kubectl(['get', 'volumes.tandem.dev', volume, '-o', 'jsonpath={.status}'])).stdout ||
          '{}',
      ) as {
        migration?: unknown;
        lastMigration?: { phase?: string; reason?: string; target?: string };
        engines?: { node: string }[];
      };
      if (status.migration !== undefined || !status.lastMigration) return false;
      words = `  Tandem: ${volume} ${status.lastMigration.phase} (${status.lastMigration.reason ?? 'no reason'}); engines now on ${(status.engines ?? []).map((e) => e.node).join(', ')}`;
      return true;
    },
    60_000,
  ).catch(() => {
    words = `  Tandem: no decision for ${volume} within 60 s (kubectl get volumes.tandem.dev ${volume} -o yaml)`;
  });
  return words;
}
