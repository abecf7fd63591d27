import { seededRandom } from '../harness/random.js';
import { trialSeed } from './campaign.js';
import { drawFaults, FAULT_KINDS, REQUEST_TIMEOUT_MS, type Topology } from './faults.js';
import { parseCampaignArgs } from './run.js';

const topology: Topology = {
  replicaOnly: ['node-2', 'node-3'],
  engineHost: 'node-1',
  engineNode: 'node-4',
  diskNodes: ['node-2', 'node-3'],
};

describe('drawing faults', () => {
  it('replays exactly from a seed, and differs between seeds', () => {
    const a = drawFaults(seededRandom(7), topology, 8000);
    expect(drawFaults(seededRandom(7), topology, 8000)).toEqual(a);
    const others = [1, 2, 3, 4, 5].map((s) => JSON.stringify(drawFaults(seededRandom(s), topology, 8000)));
    expect(new Set(others).size).toBeGreaterThan(1);
  });

  it('draws link cuts shorter and longer than the request timeout, inside the window, on the right nodes', () => {
    const random = seededRandom(11);
    for (let i = 0; i < 500; i++) {
      for (const f of drawFaults(random, topology, 8000)) {
        expect(f.atMs).toBeGreaterThanOrEqual(300);
        expect(f.atMs).toBeLessThanOrEqual(4800);
        if (f.kind === 'cut-link-short') expect(f.forMs).toBeLessThan(REQUEST_TIMEOUT_MS);
        if (f.kind === 'cut-link-long') expect(f.forMs).toBeGreaterThan(REQUEST_TIMEOUT_MS);
        if (f.kind === 'kill-engine-host') expect(f.node).toBe('node-1');
        if (f.kind === 'kill-replica-server') expect(topology.replicaOnly).toContain(f.node);
      }
    }
  });

  it('draws only the kinds asked for', () => {
    const random = seededRandom(3);
    for (let i = 0; i < 100; i++)
      for (const f of drawFaults(random, topology, 8000, ['disk-full'])) expect(f.kind).toBe('disk-full');
  });
});

describe('the campaign command line', () => {
  it('reads trials, seed, replay and kinds', () => {
    expect(parseCampaignArgs(['--trials', '5', '--seed', '42'])).toEqual({
      trials: 5,
      seed: 42,
      kinds: FAULT_KINDS,
    });
    expect(parseCampaignArgs(['--replay', '99', '--kinds', 'disk-full,cut-link-long'])).toMatchObject({
      replay: 99,
      kinds: ['disk-full', 'cut-link-long'],
    });
  });

  it('refuses what it cannot run, saying what it wants', () => {
    expect(() => parseCampaignArgs(['--trials', '0'])).toThrow('--trials must be at least 1');
    expect(() => parseCampaignArgs(['--trials', 'many'])).toThrow('--trials must be a whole number');
    expect(() => parseCampaignArgs(['--seed=-1'])).toThrow('--seed must be a whole number');
    expect(() => parseCampaignArgs(['--kinds', 'meteor'])).toThrow('unknown fault "meteor"');
    expect(() => parseCampaignArgs(['--trails', '3'])).toThrow();
  });

  it('gives every trial of a campaign its own seed', () => {
    const seeds = Array.from({ length: 100 }, (_, n) => trialSeed(2026, n));
    expect(new Set(seeds).size).toBe(100);
    expect(trialSeed(2026, 0)).not.toBe(trialSeed(2027, 0));
  });
});
