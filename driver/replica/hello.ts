/**
 * HELLO: per-volume authentication of a replica connection without sending the secret.
 *
 * The server opens every connection with a GREETING carrying a fresh random 32-byte nonce. The
 * client answers with a HELLO whose payload is:
 *
 * | offset  | size | field                                                   |
 * |---------|------|---------------------------------------------------------|
 * | 0       | 1    | V = volume name length in bytes (1..253)                |
 * | 1       | V    | volume name, UTF-8                                      |
 * | 1+V     | 1    | E = engine id length in bytes (1..253)                  |
 * | 2+V     | E    | engine id, UTF-8                                        |
 * | 2+V+E   | 8    | epoch, u64 big-endian (must equal the header's epoch)   |
 * | 10+V+E  | 32   | proof = HMAC-SHA256(secret, MAC input below)            |
 *
 * MAC input = "tandem-replica-hello-v1\0" || nonce (32) || payload bytes [0, 10+V+E), i.e. the
 * nonce, volume, engine id and epoch exactly as sent. The length prefixes make the input
 * unambiguous (a bare concatenation would let "ab"+"c" and "a"+"bc" share a proof) and the domain
 * tag keeps the secret's MACs from being reusable by any other protocol that might share it.
 * The nonce makes every proof single-use: a recorded HELLO is worthless on a new connection.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const NONCE_SIZE = 32;
export const PROOF_SIZE = 32;
/** Kubernetes object names are at most 253 characters; volume and engine ids follow them. */
export const MAX_NAME_BYTES = 253;
/** Shorter secrets are refused: they would be guessable offline from one recorded HELLO. */
export const MIN_SECRET_BYTES = 16;
export const HELLO_MIN_PAYLOAD = 1 + 1 + 1 + 1 + 8 + PROOF_SIZE;
export const HELLO_MAX_PAYLOAD = 1 + MAX_NAME_BYTES + 1 + MAX_NAME_BYTES + 8 + PROOF_SIZE;

const PROOF_DOMAIN = Buffer.from('tandem-replica-hello-v1\0', 'latin1');
const U64_MAX = (1n << 64n) - 1n;

export interface HelloFields {
  volume: string;
  engineId: string;
  epoch: bigint;
  proof: Buffer;
}

/** A fresh nonce for a server GREETING. */
export function newNonce(): Buffer {
  return randomBytes(NONCE_SIZE);
}

/**
 * UTF-8 bytes of a volume name or engine id, or undefined when it is empty, too long, or not
 * well-formed (a lone surrogate would be silently replaced by U+FFFD and no longer round-trip).
 */
export function nameBytes(name: string): Buffer | undefined {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length === 0 || bytes.length > MAX_NAME_BYTES) return undefined;
  return bytes.toString('utf8') === name ? bytes : undefined;
}

/** The payload prefix the proof covers: volume, engine id and epoch as they go on the wire. */
function helloBody(volume: string, engineId: string, epoch: bigint): Buffer | undefined {
  const v = nameBytes(volume);
  const e = nameBytes(engineId);
  if (v === undefined || e === undefined || epoch < 0n || epoch > U64_MAX) return undefined;
  const body = Buffer.alloc(2 + v.length + e.length + 8);
  body[0] = v.length;
  v.copy(body, 1);
  body[1 + v.length] = e.length;
  e.copy(body, 2 + v.length);
  body.writeBigUInt64BE(epoch, 2 + v.length + e.length);
  return body;
}

function secretBytes(secret: Uint8Array | string): Buffer {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new RangeError(`volume secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
  return bytes;
}

function mac(secret: Buffer, nonce: Uint8Array, body: Buffer): Buffer {
  if (nonce.length !== NONCE_SIZE) throw new RangeError(`nonce must be ${NONCE_SIZE} bytes`);
  return createHmac('sha256', secret).update(PROOF_DOMAIN).update(nonce).update(body).digest();
}

/** The client's proof of the volume secret for this connection's nonce. Throws on bad input. */
export function helloProof(
  secret: Uint8Array | string,
  nonce: Uint8Array,
  volume: string,
  engineId: string,
  epoch: bigint,
): Buffer {
  const body = helloBody(volume, engineId, epoch);
  if (body === undefined) throw new RangeError('invalid volume name, engine id or epoch for HELLO');
  return mac(secretBytes(secret), nonce, body);
}

/**
 * Whether `proof` was made with `secret` for exactly this nonce, volume, engine id and epoch.
 * Constant-time in the proof's content. Throws only for server-side mistakes (short secret, wrong
 * nonce size); anything the client controls yields false.
 */
export function verifyHello(
  secret: Uint8Array | string,
  nonce: Uint8Array,
  volume: string,
  engineId: string,
  epoch: bigint,
  proof: Uint8Array,
): boolean {
  const key = secretBytes(secret);
  const body = helloBody(volume, engineId, epoch);
  if (body === undefined || proof.length !== PROOF_SIZE) return false;
  return timingSafeEqual(mac(key, nonce, body), proof);
}

/** HELLO payload bytes; throws RangeError for an invalid name, epoch or proof size. */
export function encodeHelloPayload(hello: HelloFields): Buffer {
  const body = helloBody(hello.volume, hello.engineId, hello.epoch);
  if (body === undefined) throw new RangeError('invalid volume name, engine id or epoch for HELLO');
  if (hello.proof.length !== PROOF_SIZE) throw new RangeError(`HELLO proof must be ${PROOF_SIZE} bytes`);
  return Buffer.concat([body, hello.proof]);
}

// fatal: invalid UTF-8 is an error, not U+FFFD; ignoreBOM: a leading BOM is kept so names round-trip.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Strict UTF-8 decoding; undefined for malformed input. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Reads one length-prefixed name at `at`; returns it and the offset after it. */
function readName(payload: Buffer, at: number): { name: string; next: number } | undefined {
  const len = payload[at];
  if (len === undefined || len === 0 || len > MAX_NAME_BYTES || at + 1 + len > payload.length)
    return undefined;
  const name = decodeUtf8(payload.subarray(at + 1, at + 1 + len));
  return name === undefined ? undefined : { name, next: at + 1 + len };
}

/** Parses a HELLO payload; a string is the reason it is malformed. Never throws. */
export function parseHelloPayload(payload: Buffer): HelloFields | string {
  const volume = readName(payload, 0);
  if (volume === undefined) return 'bad volume name';
  const engine = readName(payload, volume.next);
  if (engine === undefined) return 'bad engine id';
  const rest = payload.length - engine.next;
  if (rest !== 8 + PROOF_SIZE) return `expected ${8 + PROOF_SIZE} bytes of epoch and proof, got ${rest}`;
  return {
    volume: volume.name,
    engineId: engine.name,
    epoch: payload.readBigUInt64BE(engine.next),
    proof: payload.subarray(engine.next + 8),
  };
}
