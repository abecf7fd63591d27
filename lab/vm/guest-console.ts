/**
 * What the built-in guest (lab/images/guest) says on its serial console, which is the launcher
 * pod's log: one `tandem-guest: <event> key=value ...` line per event. Other lines (the kernel's,
 * QEMU's) are ignored.
 */

export interface GuestEvent {
  event: string;
  fields: Record<string, string>;
}

export interface VerifyPass {
  pass: number;
  ok: boolean;
  /** The sequence number of the last write before the pass. */
  seq: number;
  blocks: number;
  wrong: number;
  ms: number;
  /** The first wrong block, as the guest describes it. */
  first?: string;
}

export interface GuestReport {
  ready: boolean;
  events: GuestEvent[];
  verifies: VerifyPass[];
  /** Writes, flushes or reads that returned an error, as the guest reported them. */
  ioErrors: GuestEvent[];
  /**
   * The guest's own count of failed writes and flushes from its latest progress line. It lives in
   * the guest's memory, so it moves with a migration: errors seen on the source node count here
   * even though their `io-error` lines are on the source pod's console.
   */
  ioErrorCount: number;
  /** The latest progress line's sequence number and write rate. */
  lastSeq: number;
  writeRates: number[];
  fatal?: string;
}

const PREFIX = 'tandem-guest: ';

export function parseGuestEvents(log: string): GuestEvent[] {
  const events: GuestEvent[] = [];
  for (const raw of log.split('\n')) {
    const at = raw.indexOf(PREFIX);
    if (at < 0) continue;
    const [event = '', ...pairs] = raw
      .slice(at + PREFIX.length)
      .trim()
      .split(/\s+/);
    const fields: Record<string, string> = {};
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      if (eq > 0) fields[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    if (event !== '') events.push({ event, fields });
  }
  return events;
}

export function guestReport(log: string): GuestReport {
  const events = parseGuestEvents(log);
  const verifies: VerifyPass[] = [];
  const ioErrors: GuestEvent[] = [];
  const writeRates: number[] = [];
  let lastSeq = 0;
  let ioErrorCount = 0;
  let fatal: string | undefined;
  for (const e of events) {
    const num = (key: string) => Number(e.fields[key] ?? Number.NaN);
    if (e.event === 'verify') {
      verifies.push({
        pass: num('pass'),
        ok: e.fields.result === 'ok',
        seq: num('seq'),
        blocks: num('blocks'),
        wrong: num('wrong'),
        ms: num('ms'),
        ...(e.fields.first === undefined ? {} : { first: e.fields.first }),
      });
    } else if (e.event === 'io-error') {
      ioErrors.push(e);
    } else if (e.event === 'progress') {
      lastSeq = Math.max(lastSeq, num('seq'));
      const errors = num('io_errors');
      if (Number.isFinite(errors)) ioErrorCount = Math.max(ioErrorCount, errors);
      const rate = num('writes_per_s');
      if (Number.isFinite(rate)) writeRates.push(rate);
    } else if (e.event === 'fatal') {
      fatal = e.fields.error ?? 'unknown';
    }
  }
  return {
    ready: events.some((e) => e.event === 'ready'),
    events,
    verifies,
    ioErrors,
    ioErrorCount,
    lastSeq,
    writeRates,
    fatal,
  };
}
