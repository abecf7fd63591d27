import { NBD_INFO, NBD_OPT, NBD_REP } from './constants.js';
import {
  type ExportConfig,
  type HandshakeConfig,
  type HandshakeEvent,
  HandshakeParser,
  transmissionFlags,
} from './handshake.js';

// Expected bytes are written out from the protocol document, not produced by the code under test.
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const u16 = (n: number): string => n.toString(16).padStart(4, '0');
const u32 = (n: number): string => n.toString(16).padStart(8, '0');
const u64 = (n: bigint): string => n.toString(16).padStart(16, '0');
const str = (s: string): string => Buffer.from(s, 'utf8').toString('hex');

const GREETING = '4e42444d41474943 49484156454f5054 0003';
const IHAVEOPT = '49484156454f5054';
const REPLY_MAGIC = '0003e889045565a9';
const FIXED = u32(1);
const FIXED_NO_ZEROES = u32(3);
const GIB = 1n << 30n;

function option(code: number, data = ''): string {
  return `${IHAVEOPT} ${u32(code)} ${u32(hex(data).length)} ${data}`;
}
function infoData(name: string, infos: number[]): string {
  return `${u32(Buffer.byteLength(name))} ${str(name)} ${u16(infos.length)} ${infos.map(u16).join('')}`;
}
function reply(opt: number, type: number, data = ''): string {
  return `${REPLY_MAGIC} ${u32(opt)} ${u32(type)} ${u32(hex(data).length)} ${data}`;
}

const exports = new Map<string, ExportConfig>([
  ['vol-a', { size: 10n * GIB, description: 'A disk' }],
  ['ro', { size: 4096n, readOnly: true }],
  ['', { size: 512n }],
]);
const config: HandshakeConfig = { exports, multiConn: true, maxPayload: 32 << 20 };
const FLAGS_RW = 0x016d; // HAS_FLAGS|SEND_FLUSH|SEND_FUA|SEND_TRIM|SEND_WRITE_ZEROES|CAN_MULTI_CONN
const FLAGS_RO = FLAGS_RW | 0x2;

interface Run {
  sent: Buffer;
  events: HandshakeEvent[];
}

/** Feeds input (after the greeting, which is checked separately) in chunks of `step` bytes. */
function run(input: string, step = Number.POSITIVE_INFINITY, cfg = config): Run {
  const parser = new HandshakeParser(cfg);
  const events: HandshakeEvent[] = [];
  parser.start();
  const bytes = hex(input);
  for (let i = 0; i < bytes.length || i === 0; i += Math.min(step, bytes.length || 1)) {
    events.push(...parser.push(bytes.subarray(i, i + step)));
  }
  const sent = Buffer.concat(events.flatMap((e) => (e.type === 'send' ? [e.data] : [])));
  return { sent, events: events.filter((e) => e.type !== 'send') };
}

describe('HandshakeParser greeting and client flags', () => {
  it('greets with NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE|NO_ZEROES, exactly once', () => {
    const parser = new HandshakeParser(config);
    expect(parser.start()).toEqual([{ type: 'send', data: hex(GREETING) }]);
    expect(parser.start()).toEqual([]);
  });

  it('sends the greeting first if push() comes before start()', () => {
    const events = new HandshakeParser(config).push(hex(FIXED));
    expect(events).toEqual([{ type: 'send', data: hex(GREETING) }]);
  });

  it('closes when the client lacks FIXED_NEWSTYLE or sets unknown flags', () => {
    for (const flags of [u32(0), u32(2), u32(5), 'ffffffff']) {
      const { sent, events } = run(flags);
      expect(sent.length).toBe(0);
      expect(events).toEqual([{ type: 'close', reason: expect.any(String) }]);
    }
  });

  it('closes on a bad IHAVEOPT magic', () => {
    const { events } = run(`${FIXED} 49484156454f5055 ${u32(3)} ${u32(0)}`);
    expect(events).toEqual([{ type: 'close', reason: expect.stringContaining('magic') }]);
  });

  it('waits for more bytes when the handshake is cut short, and ignores input once done', () => {
    const parser = new HandshakeParser(config);
    parser.start();
    const whole = hex(`${FIXED} ${option(NBD_OPT.ABORT)}`);
    expect(parser.push(whole.subarray(0, 10))).toEqual([]);
    expect(parser.done).toBe(false);
    const events = parser.push(whole.subarray(10));
    expect(events.map((e) => e.type)).toEqual(['send', 'close']);
    expect(parser.done).toBe(true);
    expect(parser.push(whole)).toEqual([]);
  });
});

describe('NBD_OPT_LIST, ABORT and unsupported options', () => {
  it('lists every export with its description, then ACKs', () => {
    const { sent, events } = run(`${FIXED} ${option(NBD_OPT.LIST)}`);
    expect(sent).toEqual(
      hex(
        reply(NBD_OPT.LIST, NBD_REP.SERVER, `${u32(5)} ${str('vol-a')} ${str('A disk')}`) +
          reply(NBD_OPT.LIST, NBD_REP.SERVER, `${u32(2)} ${str('ro')}`) +
          reply(NBD_OPT.LIST, NBD_REP.SERVER, u32(0)) +
          reply(NBD_OPT.LIST, NBD_REP.ACK),
      ),
    );
    expect(events).toEqual([]);
  });

  it('leaves hidden exports out of LIST; GO still reaches them and hands over their limit', () => {
    const limit = () => 8192n;
    const cfg: HandshakeConfig = {
      ...config,
      exports: new Map<string, ExportConfig>([
        ['vol-a', { size: 10n * GIB }],
        ['vol-a@growable', { size: 1n << 52n, hidden: true, limit }],
      ]),
    };
    expect(run(`${FIXED} ${option(NBD_OPT.LIST)}`, Number.POSITIVE_INFINITY, cfg).sent).toEqual(
      hex(
        reply(NBD_OPT.LIST, NBD_REP.SERVER, `${u32(5)} ${str('vol-a')}`) + reply(NBD_OPT.LIST, NBD_REP.ACK),
      ),
    );
    const { events } = run(
      `${FIXED} ${option(NBD_OPT.GO, infoData('vol-a@growable', []))}`,
      Number.POSITIVE_INFINITY,
      cfg,
    );
    expect(events).toEqual([
      expect.objectContaining({ type: 'ready', exportName: 'vol-a@growable', size: 1n << 52n, limit }),
    ]);
  });

  it('rejects LIST with data as ERR_INVALID and keeps haggling', () => {
    const { sent, events } = run(`${FIXED} ${option(NBD_OPT.LIST, 'aa')} ${option(NBD_OPT.ABORT)}`);
    const msg = str('NBD_OPT_LIST takes no data');
    expect(sent).toEqual(hex(reply(3, 0x80000003, msg) + reply(NBD_OPT.ABORT, NBD_REP.ACK)));
    expect(events).toEqual([{ type: 'close', reason: 'client aborted the handshake' }]);
  });

  it('answers ABORT with ACK (ignoring its data) and closes', () => {
    const { sent, events } = run(`${FIXED} ${option(NBD_OPT.ABORT, 'deadbeef')}`);
    expect(sent).toEqual(hex(`${REPLY_MAGIC} 00000002 00000001 00000000`));
    expect(events).toEqual([{ type: 'close', reason: expect.any(String) }]);
  });

  it.each([
    ['STARTTLS', NBD_OPT.STARTTLS, ''],
    ['STRUCTURED_REPLY', NBD_OPT.STRUCTURED_REPLY, ''],
    ['SET_META_CONTEXT', NBD_OPT.SET_META_CONTEXT, '0000000000000000'],
    ['an unknown option', 0x12345678, 'ff'.repeat(300)],
  ])('answers %s with ERR_UNSUP, skips its data and keeps haggling', (_name, code, data) => {
    const { sent, events } = run(`${FIXED} ${option(code, data)} ${option(NBD_OPT.LIST)}`);
    const header = hex(`${REPLY_MAGIC} ${u32(code)} 80000001`);
    expect(sent.subarray(0, 16)).toEqual(header);
    const length = sent.readUInt32BE(16);
    expect(sent.subarray(20, 20 + length).toString()).toMatch(/not supported/);
    expect(sent.subarray(20 + length)).toEqual(run(`${FIXED} ${option(NBD_OPT.LIST)}`).sent);
    expect(events).toEqual([]);
  });

  it('answers an oversized option with ERR_TOO_BIG and closes, without waiting for its data', () => {
    const { sent, events } = run(`${FIXED} ${IHAVEOPT} ${u32(NBD_OPT.GO)} ${u32(65537)}`);
    expect(sent.subarray(0, 16)).toEqual(hex(`${REPLY_MAGIC} 00000007 80000009`));
    expect(events).toEqual([{ type: 'close', reason: expect.stringContaining('65537') }]);
    const small = run(`${FIXED} ${IHAVEOPT} ${u32(NBD_OPT.LIST)} ${u32(11)}`, 1, {
      ...config,
      maxOptionLength: 10,
    });
    expect(small.events).toEqual([{ type: 'close', reason: expect.any(String) }]);
  });
});

describe('NBD_OPT_INFO and NBD_OPT_GO', () => {
  const exportInfo = (size: bigint, flags: number): string =>
    `${u16(NBD_INFO.EXPORT)} ${u64(size)} ${u16(flags)}`;
  const blockSize = `${u16(NBD_INFO.BLOCK_SIZE)} 00000001 00001000 ${u32(32 << 20)}`;

  it('INFO replies with the export info only, then ACK, and stays in haggling', () => {
    const { sent, events } = run(`${FIXED} ${option(NBD_OPT.INFO, infoData('vol-a', []))}`);
    expect(sent).toEqual(
      hex(
        reply(NBD_OPT.INFO, NBD_REP.INFO, exportInfo(10n * GIB, FLAGS_RW)) + reply(NBD_OPT.INFO, NBD_REP.ACK),
      ),
    );
    expect(events).toEqual([]);
  });

  it('INFO answers NAME, DESCRIPTION and BLOCK_SIZE requests and ignores unknown ones', () => {
    const infos = [NBD_INFO.BLOCK_SIZE, NBD_INFO.NAME, 0x7777, NBD_INFO.DESCRIPTION];
    const { sent } = run(`${FIXED} ${option(NBD_OPT.INFO, infoData('vol-a', infos))}`);
    expect(sent).toEqual(
      hex(
        reply(NBD_OPT.INFO, NBD_REP.INFO, exportInfo(10n * GIB, FLAGS_RW)) +
          reply(NBD_OPT.INFO, NBD_REP.INFO, `0001 ${str('vol-a')}`) +
          reply(NBD_OPT.INFO, NBD_REP.INFO, `0002 ${str('A disk')}`) +
          reply(NBD_OPT.INFO, NBD_REP.INFO, blockSize) +
          reply(NBD_OPT.INFO, NBD_REP.ACK),
      ),
    );
  });

  it('GO always sends BLOCK_SIZE, ACKs and enters transmission with the bytes that followed', () => {
    const { sent, events } = run(`${FIXED} ${option(NBD_OPT.GO, infoData('ro', []))} 2560951300`);
    expect(sent).toEqual(
      hex(
        reply(NBD_OPT.GO, NBD_REP.INFO, exportInfo(4096n, FLAGS_RO)) +
          reply(NBD_OPT.GO, NBD_REP.INFO, blockSize) +
          reply(NBD_OPT.GO, NBD_REP.ACK),
      ),
    );
    expect(events).toEqual([
      {
        type: 'ready',
        exportName: 'ro',
        size: 4096n,
        readOnly: true,
        transmissionFlags: FLAGS_RO,
        noZeroes: false,
        rest: hex('2560951300'),
      },
    ]);
  });

  it('GO after INFO, on the default (empty) export, fed one byte at a time', () => {
    const input = `${FIXED_NO_ZEROES} ${option(NBD_OPT.INFO, infoData('', []))} ${option(NBD_OPT.GO, infoData('', []))}`;
    const whole = run(input);
    const bytewise = run(input, 1);
    expect(bytewise.sent).toEqual(whole.sent);
    expect(bytewise.events).toEqual(whole.events);
    expect(whole.events).toEqual([
      expect.objectContaining({ type: 'ready', exportName: '', size: 512n, noZeroes: true }),
    ]);
  });

  it('answers an unknown export with ERR_UNKNOWN and a message, and lets the client retry', () => {
    const input = `${FIXED} ${option(NBD_OPT.GO, infoData('nope', []))} ${option(NBD_OPT.GO, infoData('vol-a', []))}`;
    const { sent, events } = run(input);
    expect(sent.subarray(0, 16)).toEqual(hex(`${REPLY_MAGIC} 00000007 80000006`));
    const length = sent.readUInt32BE(16);
    expect(sent.subarray(20, 20 + length).toString()).toBe('no export named "nope"');
    expect(events).toEqual([
      expect.objectContaining({ type: 'ready', exportName: 'vol-a', readOnly: false }),
    ]);
  });

  it.each([
    ['data shorter than 6 bytes', '0000000000'],
    ['a name length past the data', `${u32(100)} ${str('vol-a')} 0000`],
    ['a request count that does not match', `${u32(5)} ${str('vol-a')} 0002 0003`],
    ['trailing bytes', `${u32(5)} ${str('vol-a')} 0000 ff`],
    ['a name that is not UTF-8', `${u32(2)} c328 0000`],
  ])('answers INFO/GO with %s as ERR_INVALID', (_name, data) => {
    for (const code of [NBD_OPT.INFO, NBD_OPT.GO]) {
      const { sent, events } = run(`${FIXED} ${option(code, data)}`);
      expect(sent.subarray(0, 16)).toEqual(hex(`${REPLY_MAGIC} ${u32(code)} 80000003`));
      expect(events).toEqual([]);
    }
  });
});

describe('NBD_OPT_EXPORT_NAME', () => {
  it('replies size, flags and 124 zero bytes, then is ready', () => {
    const { sent, events } = run(`${FIXED} ${option(NBD_OPT.EXPORT_NAME, str('vol-a'))} 25`);
    expect(sent).toEqual(hex(`${u64(10n * GIB)} ${u16(FLAGS_RW)} ${'00'.repeat(124)}`));
    expect(events).toEqual([
      expect.objectContaining({ type: 'ready', exportName: 'vol-a', rest: hex('25') }),
    ]);
  });

  it('omits the zeroes when the client negotiated NO_ZEROES', () => {
    const { sent, events } = run(`${FIXED_NO_ZEROES} ${option(NBD_OPT.EXPORT_NAME, str('ro'))}`, 1);
    expect(sent).toEqual(hex(`${u64(4096n)} ${u16(FLAGS_RO)}`));
    expect(events).toEqual([
      expect.objectContaining({ type: 'ready', noZeroes: true, rest: Buffer.alloc(0) }),
    ]);
  });

  it('closes without a reply on an unknown export, an invalid name or oversized data', () => {
    for (const input of [
      option(NBD_OPT.EXPORT_NAME, str('nope')),
      option(NBD_OPT.EXPORT_NAME, 'ff'),
      `${IHAVEOPT} ${u32(NBD_OPT.EXPORT_NAME)} ${u32(1 << 20)}`,
    ]) {
      const { sent, events } = run(`${FIXED} ${input}`);
      expect(sent.length).toBe(0);
      expect(events).toEqual([{ type: 'close', reason: expect.any(String) }]);
    }
  });
});

describe('transmissionFlags and configuration', () => {
  it('advertises flush, FUA, trim and write-zeroes; multi-conn and read-only only when configured', () => {
    expect(transmissionFlags({ size: 1n }, false)).toBe(0x6d);
    expect(transmissionFlags({ size: 1n }, true)).toBe(0x16d);
    expect(transmissionFlags({ size: 1n, readOnly: true }, false)).toBe(0x6f);
  });

  it('rejects configurations the protocol cannot express', () => {
    const bad: HandshakeConfig[] = [
      { ...config, maxPayload: 512 },
      { ...config, maxPayload: 2 ** 32 },
      { ...config, maxPayload: 4096.5 },
      { ...config, maxOptionLength: -1 },
      { ...config, exports: new Map([['x', { size: -1n }]]) },
      { ...config, exports: new Map([['x', { size: 1n << 64n }]]) },
      { ...config, exports: new Map([['x'.repeat(4097), { size: 1n }]]) },
      { ...config, exports: new Map([['x', { size: 1n, description: 'd'.repeat(4097) }]]) },
    ];
    for (const cfg of bad) expect(() => new HandshakeParser(cfg)).toThrow(RangeError);
  });
});
