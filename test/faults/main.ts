/**
 * `npm run faults -- --trials N --seed S` runs the fault campaign (campaign.ts) and prints one
 * line per trial, then the summary as one JSON line (the last line). A failed trial prints its
 * own seed and the command that replays it (`--replay SEED` runs that one trial alone).
 * `--kinds a,b` limits the faults drawn. Exit status 1 when any trial failed, 2 on bad flags.
 * Needs root (network namespaces, tmpfs mounts), like the integration tests.
 */
import { type CampaignOptions, parseCampaignArgs, runCampaign } from './run.js';

let options: CampaignOptions;
try {
  options = parseCampaignArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`faults: ${(err as Error).message}\n`);
  process.exit(2);
}
const { summary } = await runCampaign(options, (line) => process.stdout.write(`${line}\n`));
process.stdout.write(`${JSON.stringify(summary)}\n`);
process.exit(summary.failed_trials.length > 0 ? 1 : 0);
