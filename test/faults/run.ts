/** The campaign's command line and its run over trials (main.ts is the command). */
import { parseArgs } from 'node:util';
import { Campaign, type CampaignSummary, failed, type TrialResult, trialSeed } from './campaign.js';
import { FAULT_KINDS, type FaultKind } from './faults.js';

export interface CampaignOptions {
  trials: number;
  seed: number;
  replay?: number;
  kinds: readonly FaultKind[];
}

export function parseCampaignArgs(argv: string[]): CampaignOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      trials: { type: 'string', default: '10' },
      seed: { type: 'string', default: String(Date.now() % 1_000_000) },
      replay: { type: 'string' },
      kinds: { type: 'string' },
    },
    strict: true,
  });
  const integer = (name: string, text: string, max: number) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0 || n > max)
      throw new Error(`--${name} must be a whole number from 0 to ${max}, not "${text}"`);
    return n;
  };
  const kinds = (values.kinds?.split(',') ?? [...FAULT_KINDS]).map((k) => k.trim());
  for (const k of kinds)
    if (!FAULT_KINDS.includes(k as FaultKind))
      throw new Error(`--kinds: unknown fault "${k}" (known: ${FAULT_KINDS.join(', ')})`);
  const trials = integer('trials', values.trials, 10_000);
  if (trials === 0) throw new Error('--trials must be at least 1');
  return {
    trials,
    seed: integer('seed', values.seed, 2 ** 32 - 1),
    kinds: kinds as FaultKind[],
    ...(values.replay === undefined ? {} : { replay: integer('replay', values.replay, 2 ** 32 - 1) }),
  };
}

/** Runs a campaign; `log` gets the per-trial lines. */
export async function runCampaign(
  options: CampaignOptions,
  log: (line: string) => void,
): Promise<{ summary: CampaignSummary; results: TrialResult[] }> {
  const campaign = new Campaign(log);
  const results: TrialResult[] = [];
  // Interrupted (Ctrl-C, a CI timeout): remove the namespaces, mounts and processes first.
  // The summary of the trials that finished is printed first, so a bounded run still reports.
  const interrupted = (signal: NodeJS.Signals) => {
    log(`faults: ${signal} after ${results.length} trials, tearing down`);
    log(JSON.stringify({ ...campaign.summary(options.seed, results), interrupted: true }));
    void campaign.tearDown().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  await campaign.setUp();
  try {
    const seeds =
      options.replay === undefined
        ? Array.from({ length: options.trials }, (_, n) => trialSeed(options.seed, n))
        : [options.replay];
    for (const [n, seed] of seeds.entries()) {
      const result = await campaign.trial(n, seed, options.kinds);
      results.push(result);
      const recovery =
        result.recoveryMs === undefined
          ? 'not converged'
          : `recovered in ${(result.recoveryMs / 1000).toFixed(1)} s`;
      const migration = result.migration === undefined ? '' : `, migration ${result.migration}`;
      const phases = result.phasesMs === undefined ? '' : ` (phases ms ${JSON.stringify(result.phasesMs)})`;
      log(`trial ${n}: ${failed(result) ? 'FAILED' : 'ok'}, ${recovery}${migration}${phases}`);
      if (failed(result)) {
        for (const p of result.problems.slice(0, 10)) log(`  ${p}`);
        log(`  replay: npm run faults -- --replay ${seed} --kinds ${options.kinds.join(',')}`);
      }
    }
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await campaign.tearDown();
  }
  return { summary: campaign.summary(options.seed, results), results };
}
