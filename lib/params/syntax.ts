/** Small syntax helpers shared by the StorageClass and nfsOptions parsers. */

export type StrictInteger = { ok: true; value: number } | { ok: false; leadingZero: boolean };

/**
 * Digits only: no sign, no spaces, no decimal point, no exponent, and no
 * leading zero (except "0" itself), so a value means the same to every reader.
 */
export function parseStrictInteger(text: string): StrictInteger {
  if (/^(?:0|[1-9][0-9]*)$/.test(text)) return { ok: true, value: Number(text) };
  return { ok: false, leadingZero: /^0[0-9]+$/.test(text) };
}

/** Levenshtein distance, two rows at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * The candidate closest to `input` (case-insensitively) if it is within edit
 * distance 3; on a tie the earlier candidate wins, so callers list the likely
 * ones first.
 */
export function didYouMean(input: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 4;
  for (const candidate of candidates) {
    const distance = editDistance(input.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}
