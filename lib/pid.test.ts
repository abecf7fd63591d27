import { spawnSync } from 'node:child_process';
import { isProcessAlive } from './pid.js';

describe('isProcessAlive', () => {
  it('is true for this process and false for one that has exited', () => {
    expect(isProcessAlive(process.pid)).toBe(true);
    const exited = spawnSync('true').pid;
    expect(exited).toBeGreaterThan(0);
    expect(isProcessAlive(exited ?? 0)).toBe(false);
  });

  it('never treats 0, negative or fractional numbers as a process (kill(0) would signal our own group)', () => {
    for (const pid of [0, -1, 1.5, Number.NaN]) expect(isProcessAlive(pid)).toBe(false);
  });
});
