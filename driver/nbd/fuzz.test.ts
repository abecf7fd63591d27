// Seeded fuzzing of both decoders: random and mutated-valid inputs fed in random chunk sizes. The
// properties: push() never throws and returns, nothing is emitted after a terminal event, no request
// reaches outside the export, and the result does not depend on how the input was chunked.

import { seededRandom } from '../../test/harness/random.js';
import { NBD_CMD, NBD_CMD_FLAG, NBD_ERRNO, NBD_INFO, NBD_MAGIC, NBD_OPT } from './constants.js';
import { type ExportConfig, type HandshakeEvent, HandshakeParser, transmissionFlags } from './handshake.js';
import { type DecodeEvent, type DecoderConfig, encodeRequest, RequestDecoder } from './transmission.js';

const SEED = 0x5eed_2024;
const CASES_PER_DECODER = 10_000;

/** Fuzzing helpers over the shared seeded generator, so a failing case replays from its seed. */
class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = seededRandom(seed);
  }
  u32(): number {
    return (this.next() * 2 ** 32) >>> 0;
  }
  int(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
  bytes(n: number): Buffer {
    return Buffer.from(Array.from({ length: n }, () => this.int(256)));
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

/** Byte-level damage: flips, insertions, deletions, truncation and duplication. */
function mutate(rng: Rng, input: Buffer): Buffer {
  let out = Buffer.from(input);
  for (let n = rng.int(4); n > 0; n--) {
    const at = rng.int(out.length + 1);
    switch (rng.int(5)) {
      case 0:
        if (at < out.length) out[at] = rng.int(256);
        break;
      case 1:
        out = Buffer.concat([out.subarray(0, at), rng.bytes(1 + rng.int(8)), out.subarray(at)]);
        break;
      case 2:
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + rng.int(8))]);
        break;
      case 3:
        out = out.subarray(0, at);
        break;
      default:
        out = Buffer.concat([out, out.subarray(at)]);
    }
  }
  return out;
}

function chunks(rng: Rng, input: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const bytewise = rng.chance(0.2);
  for (let i = 0; i < input.length; ) {
    const n = bytewise ? 1 : 1 + rng.int(48);
    out.push(input.subarray(i, i + n));
    i += n;
  }
  return out;
}

/** Canonical text of an event list, to compare chunked and whole feeding. */
function canon(events: readonly unknown[]): string {
  return JSON.stringify(events, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));
}

function fail(what: string, input: Buffer, detail: string): never {
  throw new Error(`${what} on input ${input.toString('hex')}: ${detail}`);
}

// --- transmission ---------------------------------------------------------------------------

const SIZES = [0n, 4096n, 1n << 20n, (1n << 64n) - 1n];
const COMMANDS = [0, 1, 1, 2, 3, 4, 5, 6, 7, 0xffff];
const ERRNOS = new Set<number>(Object.values(NBD_ERRNO).filter((e) => e !== 0));
const MUTATING = new Set<number>([NBD_CMD.WRITE, NBD_CMD.TRIM, NBD_CMD.WRITE_ZEROES]);

interface RequestStream {
  bytes: Buffer;
  /** Cookies the decoder must answer, in order, before it stops (at DISC or an oversized WRITE). */
  cookies: bigint[];
  endsFatal: boolean;
}

/** Well-framed requests (every WRITE carries its payload) with hostile fields. */
function requestStream(rng: Rng, cfg: DecoderConfig): RequestStream {
  const parts: Buffer[] = [];
  const cookies: bigint[] = [];
  let stopped: 'fatal' | 'disc' | undefined;
  for (let n = 1 + rng.int(5); n > 0; n--) {
    const command = rng.pick(COMMANDS);
    const length = rng.pick([0, 1, 7, 64, cfg.maxPayload, cfg.maxPayload + 1, rng.u32()]);
    const near = BigInt(rng.int(70));
    const offset = rng.pick([0n, near, cfg.size - near, cfg.size + near, rng.u64()]);
    const request = {
      flags: rng.chance(0.7) ? rng.int(4) : rng.int(0x10000),
      command,
      cookie: rng.u64(),
      offset: BigInt.asUintN(64, offset),
      length,
    };
    const oversized = command === NBD_CMD.WRITE && length > cfg.maxPayload;
    const payload = command === NBD_CMD.WRITE && !oversized ? Buffer.alloc(length, rng.int(256)) : undefined;
    parts.push(encodeRequest(payload ? { ...request, payload } : request));
    if (stopped) continue;
    if (oversized) stopped = 'fatal';
    else cookies.push(request.cookie);
    if (command === NBD_CMD.DISC) stopped = 'disc';
  }
  return { bytes: Buffer.concat(parts), cookies, endsFatal: stopped === 'fatal' };
}

/** Framing oracle: one answer per request, in order, so a desynchronised decoder is caught. */
function checkFraming(stream: RequestStream, events: DecodeEvent[]): string | undefined {
  const answered = events.flatMap((e) =>
    e.type === 'request' ? [e.request.cookie] : e.type === 'error' ? [e.cookie] : [],
  );
  if (canon(answered) !== canon(stream.cookies)) return 'answers do not match the requests sent';
  if (stream.endsFatal !== (events[events.length - 1]?.type === 'fatal')) return 'fatal mismatch';
  return undefined;
}

function feedDecoder(cfg: DecoderConfig, pieces: Buffer[]): DecodeEvent[] {
  const decoder = new RequestDecoder(cfg);
  const events: DecodeEvent[] = [];
  for (const piece of pieces) {
    const wasDone = decoder.done;
    const out = decoder.push(piece);
    if (wasDone && out.length > 0) throw new Error('events after the decoder finished');
    events.push(...out);
  }
  return events;
}

function checkDecodeEvents(cfg: DecoderConfig, events: DecodeEvent[]): string | undefined {
  for (const [i, event] of events.entries()) {
    if (event.type === 'fatal') {
      if (i !== events.length - 1) return 'events after fatal';
      continue;
    }
    if (event.type === 'error') {
      if (!ERRNOS.has(event.errno)) return `bad errno ${event.errno}`;
      continue;
    }
    const { command, offset, length, payload, flags } = event.request;
    if (command === NBD_CMD.DISC) {
      if (i !== events.length - 1 || offset !== 0n || length !== 0) return 'DISC not terminal or not zeroed';
      continue;
    }
    if (offset < 0n || offset + BigInt(length) > cfg.size)
      return `request outside the export: ${offset}+${length}`;
    if ((command === NBD_CMD.READ || command === NBD_CMD.WRITE) && length > cfg.maxPayload) return 'too long';
    if ((command === NBD_CMD.WRITE) !== (payload !== undefined)) return 'payload on the wrong command';
    if (payload && payload.length !== length) return 'payload length mismatch';
    if (cfg.readOnly && MUTATING.has(command)) return 'mutation on a read-only export';
    if (![0, 1, 3, 4, 6].includes(command)) return `unsupported command ${command} yielded`;
    if ((flags & ~(NBD_CMD_FLAG.FUA | NBD_CMD_FLAG.NO_HOLE)) !== 0) return 'unexpected flags yielded';
  }
  return undefined;
}

// --- handshake --------------------------------------------------------------------------------

const EXPORTS = new Map<string, ExportConfig>([
  ['disk', { size: 1n << 30n, description: 'fuzz' }],
  ['ro', { size: 4096n, readOnly: true }],
  ['', { size: 0n }],
]);
const NAMES = ['disk', 'ro', '', 'missing', '\u00e9t\u00e9'];
const OPTIONS = [1, 2, 3, 5, 6, 6, 7, 7, 8, 9, 10, 0xdead];

function option(code: number, data: Buffer, lengthOverride?: number): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(NBD_MAGIC.IHAVEOPT, 0);
  header.writeUInt32BE(code, 8);
  header.writeUInt32BE(lengthOverride ?? data.length, 12);
  return Buffer.concat([header, data]);
}

function optionData(rng: Rng, code: number): Buffer {
  const name = Buffer.from(rng.pick(NAMES), 'utf8');
  if (code === NBD_OPT.EXPORT_NAME) return name;
  if (code !== NBD_OPT.INFO && code !== NBD_OPT.GO)
    return rng.chance(0.7) ? Buffer.alloc(0) : rng.bytes(rng.int(40));
  const infos = Array.from({ length: rng.int(4) }, () => rng.pick([NBD_INFO.EXPORT, 1, 2, 3, 0xffff]));
  const data = Buffer.alloc(6 + name.length + 2 * infos.length);
  data.writeUInt32BE(name.length, 0);
  name.copy(data, 4);
  data.writeUInt16BE(infos.length, 4 + name.length);
  for (const [i, info] of infos.entries()) data.writeUInt16BE(info, 6 + name.length + 2 * i);
  return data;
}

function handshakeStream(rng: Rng): Buffer {
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(rng.chance(0.9) ? rng.pick([1, 3]) : rng.u32(), 0);
  const parts: Buffer[] = [flags];
  for (let n = 1 + rng.int(4); n > 0; n--) {
    const code = rng.pick(OPTIONS);
    const huge = rng.chance(0.03) ? 65_537 + rng.int(1 << 20) : undefined;
    parts.push(option(code, optionData(rng, code), huge));
  }
  if (rng.chance(0.5)) parts.push(rng.bytes(rng.int(40)));
  return Buffer.concat(parts);
}

interface HandshakeRun {
  sent: Buffer;
  events: HandshakeEvent[];
  /** What a server would hand to the request decoder: the ready event's rest plus later chunks. */
  after: Buffer;
}

function feedHandshake(pieces: Buffer[]): HandshakeRun {
  const parser = new HandshakeParser({ exports: EXPORTS, multiConn: false, maxPayload: 1 << 20 });
  const sent: Buffer[] = parser.start().flatMap((e) => (e.type === 'send' ? [e.data] : []));
  const events: HandshakeEvent[] = [];
  const after: Buffer[] = [];
  for (const piece of pieces) {
    const wasDone = parser.done;
    const out = parser.push(piece);
    if (wasDone && out.length > 0) throw new Error('events after the handshake finished');
    if (wasDone && events[0]?.type === 'ready') after.push(piece);
    for (const event of out) {
      if (event.type === 'send') {
        sent.push(event.data);
      } else if (event.type === 'ready') {
        after.push(event.rest);
        events.push({ ...event, rest: Buffer.alloc(0) });
      } else {
        events.push(event);
      }
    }
  }
  return { sent: Buffer.concat(sent), events, after: Buffer.concat(after) };
}

function checkHandshake(input: Buffer, { sent, events, after }: HandshakeRun): string | undefined {
  if (events.length > 1) return 'more than one terminal event';
  const [event] = events;
  if (event?.type === 'ready') {
    const exp = EXPORTS.get(event.exportName);
    if (!exp) return `ready on unknown export ${event.exportName}`;
    if (event.size !== exp.size || event.transmissionFlags !== transmissionFlags(exp, false))
      return 'wrong export';
    if (!input.subarray(input.length - after.length).equals(after)) return 'bytes after ready are lost';
  }
  // Everything after the greeting is option replies, except a final EXPORT_NAME reply (10 or 134 bytes).
  let pos = 18;
  while (sent.length - pos >= 20 && sent.readBigUInt64BE(pos) === NBD_MAGIC.OPTION_REPLY) {
    pos += 20 + sent.readUInt32BE(pos + 16);
  }
  const tail = sent.length - pos;
  const exportNameReply = event?.type === 'ready' && (tail === 10 || tail === 134);
  if (tail !== 0 && !exportNameReply) return 'malformed reply stream';
  return undefined;
}

describe('fuzz', () => {
  it(`RequestDecoder survives ${CASES_PER_DECODER} random and mutated streams`, () => {
    const rng = new Rng(SEED);
    let requests = 0;
    for (let i = 0; i < CASES_PER_DECODER; i++) {
      const cfg: DecoderConfig = {
        size: rng.pick(SIZES),
        maxPayload: rng.pick([64, 4096]),
        readOnly: rng.chance(0.2),
      };
      const kind = rng.int(3);
      const stream = requestStream(rng, cfg);
      const input =
        kind === 0 ? rng.bytes(rng.int(120)) : kind === 1 ? mutate(rng, stream.bytes) : stream.bytes;
      const whole = feedDecoder(cfg, [input]);
      const pieces = feedDecoder(cfg, chunks(rng, input));
      const problem =
        checkDecodeEvents(cfg, pieces) ?? (kind === 2 ? checkFraming(stream, pieces) : undefined);
      if (problem) fail('RequestDecoder', input, problem);
      if (canon(whole) !== canon(pieces)) fail('RequestDecoder', input, 'chunking changed the result');
      requests += pieces.filter((e) => e.type === 'request').length;
    }
    expect(requests).toBeGreaterThan(CASES_PER_DECODER / 5); // the generator does reach valid requests
  });

  it(`HandshakeParser survives ${CASES_PER_DECODER} random and mutated negotiations`, () => {
    const rng = new Rng(SEED ^ 0xffff);
    const outcomes = { ready: 0, close: 0, waiting: 0 };
    for (let i = 0; i < CASES_PER_DECODER; i++) {
      const kind = rng.int(3);
      const valid = handshakeStream(rng);
      const input = kind === 0 ? rng.bytes(rng.int(80)) : kind === 1 ? mutate(rng, valid) : valid;
      const whole = feedHandshake([input]);
      const pieces = feedHandshake(chunks(rng, input));
      const problem = checkHandshake(input, pieces);
      if (problem) fail('HandshakeParser', input, problem);
      const same = whole.sent.equals(pieces.sent) && whole.after.equals(pieces.after);
      if (!same || canon(whole.events) !== canon(pieces.events)) {
        fail('HandshakeParser', input, 'chunking changed the result');
      }
      const end = pieces.events[0];
      outcomes[end?.type === 'ready' || end?.type === 'close' ? end.type : 'waiting']++;
    }
    expect(outcomes.ready).toBeGreaterThan(CASES_PER_DECODER / 10);
    expect(outcomes.close).toBeGreaterThan(CASES_PER_DECODER / 10);
  });
});
