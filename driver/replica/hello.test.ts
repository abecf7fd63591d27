import {
  encodeHelloPayload,
  HELLO_MAX_PAYLOAD,
  HELLO_MIN_PAYLOAD,
  helloProof,
  newNonce,
  parseHelloPayload,
  verifyHello,
} from './hello.js';

const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');
const NONCE = newNonce();

function flipLastBit(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  copy[copy.length - 1] = (copy[copy.length - 1] ?? 0) ^ 1;
  return copy;
}

describe('HELLO proof', () => {
  const proof = helloProof(SECRET, NONCE, 'pvc-1', 'engine-a', 5n);

  it('is accepted for the right secret, nonce, volume, engine and epoch', () => {
    expect(proof).toHaveLength(32);
    expect(verifyHello(SECRET, NONCE, 'pvc-1', 'engine-a', 5n, proof)).toBe(true);
    expect(verifyHello(SECRET.toString(), NONCE, 'pvc-1', 'engine-a', 5n, proof)).toBe(true);
  });

  it.each([
    [
      'secret',
      () =>
        verifyHello(Buffer.from('0123456789abcdef0123456789abcdeF'), NONCE, 'pvc-1', 'engine-a', 5n, proof),
    ],
    ['nonce', () => verifyHello(SECRET, newNonce(), 'pvc-1', 'engine-a', 5n, proof)],
    ['volume', () => verifyHello(SECRET, NONCE, 'pvc-2', 'engine-a', 5n, proof)],
    ['engine id', () => verifyHello(SECRET, NONCE, 'pvc-1', 'engine-b', 5n, proof)],
    ['epoch', () => verifyHello(SECRET, NONCE, 'pvc-1', 'engine-a', 6n, proof)],
    ['last proof bit', () => verifyHello(SECRET, NONCE, 'pvc-1', 'engine-a', 5n, flipLastBit(proof))],
    ['proof length', () => verifyHello(SECRET, NONCE, 'pvc-1', 'engine-a', 5n, proof.subarray(0, 31))],
    ['empty proof', () => verifyHello(SECRET, NONCE, 'pvc-1', 'engine-a', 5n, Buffer.alloc(0))],
    ['invalid volume', () => verifyHello(SECRET, NONCE, '', 'engine-a', 5n, proof)],
  ])('is rejected when the %s differs', (_what, check) => {
    expect(check()).toBe(false);
  });

  it('does not let name boundaries shift ("ab"+"c" vs "a"+"bc")', () => {
    expect(helloProof(SECRET, NONCE, 'ab', 'c', 1n)).not.toEqual(helloProof(SECRET, NONCE, 'a', 'bc', 1n));
  });

  it('is deterministic for the same inputs and differs per nonce', () => {
    expect(helloProof(SECRET, NONCE, 'v', 'e', 0n)).toEqual(helloProof(SECRET, NONCE, 'v', 'e', 0n));
    expect(newNonce()).not.toEqual(newNonce());
  });

  it('refuses short secrets and wrong-size nonces (server mistakes) loudly', () => {
    expect(() => helloProof('short', NONCE, 'v', 'e', 0n)).toThrow(RangeError);
    expect(() => verifyHello('short', NONCE, 'v', 'e', 0n, Buffer.alloc(32))).toThrow(RangeError);
    expect(() => helloProof(SECRET, Buffer.alloc(16), 'v', 'e', 0n)).toThrow(RangeError);
    expect(() => helloProof(SECRET, NONCE, 'v', 'e', -1n)).toThrow(RangeError);
  });
});

describe('HELLO payload', () => {
  it('round-trips and spans the documented size range', () => {
    const proof = helloProof(SECRET, NONCE, 'v', 'e', 3n);
    const small = encodeHelloPayload({ volume: 'v', engineId: 'e', epoch: 3n, proof });
    expect(small).toHaveLength(HELLO_MIN_PAYLOAD);
    expect(parseHelloPayload(small)).toEqual({ volume: 'v', engineId: 'e', epoch: 3n, proof });
    const big = encodeHelloPayload({ volume: 'v'.repeat(253), engineId: 'e'.repeat(253), epoch: 3n, proof });
    expect(big).toHaveLength(HELLO_MAX_PAYLOAD);
    expect(small[0]).toBe(1);
    expect(small.readBigUInt64BE(4)).toBe(3n);
  });

  it('reports why a payload is malformed instead of throwing', () => {
    expect(parseHelloPayload(Buffer.alloc(0))).toEqual(expect.any(String));
    expect(parseHelloPayload(Buffer.from([1, 0x76]))).toEqual(expect.any(String));
    expect(parseHelloPayload(Buffer.from([1, 0x76, 1, 0x65, 0]))).toEqual(expect.any(String));
  });
});
