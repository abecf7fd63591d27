/** The largest range one EXTENTS or TRIM request covers (the protocol's length field is 32 bits). */
export const REQUEST_RANGE_STEP = 1024 * 1024 * 1024;

export interface Piece {
  offset: number;
  length: number;
}

/** [offset, offset + length) cut into consecutive pieces of at most `step` bytes, in order. */
export function* pieces(offset: number, length: number, step: number): Generator<Piece> {
  const end = offset + length;
  for (let at = offset; at < end; at += step) yield { offset: at, length: Math.min(step, end - at) };
}
