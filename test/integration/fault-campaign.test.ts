/**
 * The short fault campaign `make test` runs (issue 16): a few trials with a fixed seed over every
 * fault kind the campaign wires, on real data planes and a real kube-apiserver. The full campaign
 * is `npm run faults -- --trials 100 --seed S` (docs/faults.md has its results).
 */
import { describe, expect, it, jest } from '@jest/globals';
import { FAULT_KINDS } from '../faults/faults.js';
import { runCampaign } from '../faults/run.js';

jest.setTimeout(600_000);

describe('the fault campaign, short', () => {
  it('loses no acknowledged write, leaves identical replicas and one engine per volume', async () => {
    const lines: string[] = [];
    const { summary, results } = await runCampaign({ trials: 4, seed: 16, kinds: FAULT_KINDS }, (line) =>
      lines.push(line),
    );
    if (summary.failed_trials.length > 0) console.log(lines.join('\n'));
    expect(results).toHaveLength(4);
    expect(summary.acknowledged_writes).toBeGreaterThan(1000);
    expect(Object.values(summary.faults).reduce((a, b) => a + (b ?? 0), 0)).toBeGreaterThanOrEqual(4);
    expect({
      lost: summary.lost_acknowledged_writes,
      corrupt: summary.corrupt_blocks,
      divergent: summary.divergent_replicas,
      unconverged: summary.unconverged,
      failed: summary.failed_trials,
    }).toEqual({ lost: 0, corrupt: 0, divergent: 0, unconverged: 0, failed: [] });
  });
});
