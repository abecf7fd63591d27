/** Percentile by nearest rank over a copy of the samples (milliseconds in, milliseconds out). */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

export function summary(samples: readonly number[]) {
  return {
    n: samples.length,
    p50: round(percentile(samples, 50)),
    p99: round(percentile(samples, 99)),
    max: round(Math.max(...samples)),
  };
}
