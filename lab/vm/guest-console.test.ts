import { guestReport, parseGuestEvents } from './guest-console.js';

const log = [
  '[    0.000000] Linux version 6.1.0',
  'tandem-guest: ready disk=/dev/vda bytes=268435456 blocks=4096 run=ab12',
  'tandem-guest: progress seq=1305 writes_per_s=1305 flushes=163 io_errors=0',
  'tandem-guest: verify pass=1 result=ok seq=2596 blocks=1952 wrong=0 ms=94',
  'tandem-guest: progress seq=2600 writes_per_s=1290 flushes=325 io_errors=0',
  'tandem-guest: io-error op=write block=7 seq=2601 error=input/output_error',
  'tandem-guest: verify pass=2 result=FAIL seq=2700 blocks=2000 wrong=3 ms=90 first=block=12_want_seq=2599_problem=stale(holds-seq-17)',
].join('\n');

describe('the guest console', () => {
  it('reads events and their fields, ignoring other lines', () => {
    const events = parseGuestEvents(log);
    expect(events.map((e) => e.event)).toEqual([
      'ready',
      'progress',
      'verify',
      'progress',
      'io-error',
      'verify',
    ]);
    expect(events[0]?.fields).toMatchObject({ disk: '/dev/vda', blocks: '4096' });
  });

  it('summarizes verify passes, I/O errors and progress', () => {
    const report = guestReport(log);
    expect(report.ready).toBe(true);
    expect(report.lastSeq).toBe(2600);
    expect(report.writeRates).toEqual([1305, 1290]);
    expect(report.ioErrors).toHaveLength(1);
    expect(report.ioErrorCount).toBe(0);
    expect(report.verifies).toEqual([
      { pass: 1, ok: true, seq: 2596, blocks: 1952, wrong: 0, ms: 94 },
      {
        pass: 2,
        ok: false,
        seq: 2700,
        blocks: 2000,
        wrong: 3,
        ms: 90,
        first: 'block=12_want_seq=2599_problem=stale(holds-seq-17)',
      },
    ]);
  });

  it('counts the errors a guest reports in its progress lines, which a migration carries along', () => {
    // The target pod's console: the io-error line itself went to the source pod's console.
    const target = guestReport(
      [
        'tandem-guest: progress seq=9000 writes_per_s=1200 flushes=1100 io_errors=2',
        'tandem-guest: progress seq=10200 writes_per_s=1200 flushes=1250 io_errors=3',
      ].join('\n'),
    );
    expect(target.ioErrors).toEqual([]);
    expect(target.ioErrorCount).toBe(3);
  });
});
