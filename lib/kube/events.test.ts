import { ApiException, type EventsV1Event, type EventsV1EventSeries } from '@kubernetes/client-node';
import { pino } from 'pino';
import { EventRecorder, type EventsApi, NOTE_LIMIT, truncateUtf8 } from './events.js';

/** Records every call; `failures` makes the next calls reject. */
class FakeEventsApi implements EventsApi {
  created: { namespace: string; event: EventsV1Event }[] = [];
  series: { namespace: string; name: string; series: EventsV1EventSeries }[] = [];
  failures: unknown[] = [];
  gone = new Set<string>();

  async create(namespace: string, event: EventsV1Event): Promise<EventsV1Event> {
    const failure = this.failures.shift();
    if (failure) throw failure;
    this.created.push({ namespace, event: JSON.parse(JSON.stringify(event)) });
    return event;
  }

  async updateSeries(namespace: string, name: string, series: EventsV1EventSeries): Promise<EventsV1Event> {
    const failure = this.failures.shift();
    if (failure) throw failure;
    if (this.gone.has(name)) throw new ApiException(404, 'NotFound', {}, {});
    this.series.push({ namespace, name, series: JSON.parse(JSON.stringify(series)) });
    return {} as EventsV1Event;
  }
}

const claim = {
  apiVersion: 'v1',
  kind: 'PersistentVolumeClaim',
  metadata: { name: 'data', namespace: 'apps', uid: 'uid-1', resourceVersion: '42' },
};
const volume = {
  apiVersion: 'tandem.dev/v1alpha1',
  kind: 'Volume',
  metadata: { name: 'pvc-123', uid: 'uid-2' },
};

function recorder(
  api: EventsApi,
  options: { seriesUpdateIntervalMs?: number; aggregationWindowMs?: number } = {},
) {
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
  const events = new EventRecorder({
    api,
    reportingInstance: 'controller-0',
    seriesUpdateIntervalMs: 0,
    log,
    ...options,
  });
  return { events, lines };
}

/** The i-th created event (failing the test when there is none). */
function created(api: FakeEventsApi, i = 0): { namespace: string; event: EventsV1Event } {
  const entry = api.created[i];
  if (!entry) throw new Error(`expected at least ${i + 1} created events, got ${api.created.length}`);
  return entry;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('EventRecorder', () => {
  it('writes an events.k8s.io/v1 Event about the object, in its namespace', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api);
    events.warning(claim, 'ProvisioningFailed', 'no node has room for 3 replicas', 'Provision');
    await events.flush();
    expect(api.created).toHaveLength(1);
    const { namespace, event } = created(api);
    expect(namespace).toBe('apps');
    expect(event).toMatchObject({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { namespace: 'apps' },
      regarding: {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        name: 'data',
        namespace: 'apps',
        uid: 'uid-1',
        resourceVersion: '42',
      },
      type: 'Warning',
      reason: 'ProvisioningFailed',
      action: 'Provision',
      note: 'no node has room for 3 replicas',
      reportingController: 'csi.tandem.dev',
      reportingInstance: 'controller-0',
    });
    expect(event.metadata?.name).toMatch(/^data\.[0-9a-f]+$/);
    expect(String(event.eventTime)).toMatch(/\.\d{6}Z$/);
    expect(event.series).toBeUndefined();
  });

  it('writes events about cluster-scoped objects to the default namespace; action defaults to the reason', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api);
    events.normal(volume, 'Attached', 'engine running on node-a');
    await events.flush();
    expect(created(api).namespace).toBe('default');
    expect(created(api).event).toMatchObject({
      regarding: { kind: 'Volume', name: 'pvc-123' },
      type: 'Normal',
      action: 'Attached',
    });
    expect(created(api).event.regarding?.namespace).toBeUndefined();
  });

  it('accepts an object reference as the subject', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api);
    events.normal({ kind: 'Node', name: 'node-a', apiVersion: 'v1' }, 'Registered', 'data plane up');
    await events.flush();
    expect(created(api).event.regarding).toMatchObject({ kind: 'Node', name: 'node-a' });
  });

  it('truncates the message to 1024 bytes, on a character boundary', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api);
    events.warning(claim, 'Failed', 'é'.repeat(2000));
    await events.flush();
    const note = created(api).event.note ?? '';
    expect(Buffer.byteLength(note, 'utf8')).toBeLessThanOrEqual(NOTE_LIMIT);
    expect(note.endsWith('…')).toBe(true);
    expect(note.startsWith('éé')).toBe(true);
    expect(truncateUtf8('short', NOTE_LIMIT)).toBe('short');
  });

  it('aggregates identical repeats into the first event’s series', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api);
    events.warning(claim, 'AttachFailed', 'replica on node-b unreachable');
    await events.flush();
    events.warning(claim, 'AttachFailed', 'replica on node-b unreachable');
    await events.flush();
    events.warning(claim, 'AttachFailed', 'replica on node-b unreachable');
    await events.flush();
    expect(api.created).toHaveLength(1);
    const name = created(api).event.metadata?.name;
    expect(api.series.map((s) => [s.name, s.namespace, s.series.count])).toEqual([
      [name, 'apps', 2],
      [name, 'apps', 3],
    ]);
    expect(String(api.series[1]?.series.lastObservedTime)).toMatch(/\.\d{6}Z$/);
  });

  it('coalesces a burst of repeats into few writes carrying the final count', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api);
    for (let i = 0; i < 50; i++) events.warning(claim, 'AttachFailed', 'again');
    await events.flush();
    expect(api.created).toHaveLength(1);
    const last = api.series.at(-1)?.series.count ?? created(api).event.series?.count;
    expect(last).toBe(50);
    expect(api.created.length + api.series.length).toBeLessThanOrEqual(3);
  });

  it('throttles series updates, and flush() sends the throttled one', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api, { seriesUpdateIntervalMs: 60_000 });
    events.warning(claim, 'AttachFailed', 'again');
    await events.flush();
    events.warning(claim, 'AttachFailed', 'again');
    events.warning(claim, 'AttachFailed', 'again');
    await sleep(20);
    expect(api.series).toHaveLength(0);
    await events.flush();
    expect(api.series.map((s) => s.series.count)).toEqual([3]);
  });

  it('keeps different events apart', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api);
    events.warning(claim, 'AttachFailed', 'node-b unreachable');
    events.warning(claim, 'AttachFailed', 'node-c unreachable');
    events.normal(claim, 'AttachFailed', 'node-b unreachable');
    events.warning(volume, 'AttachFailed', 'node-b unreachable');
    await events.flush();
    expect(api.created).toHaveLength(4);
    expect(api.series).toHaveLength(0);
  });

  it('starts a new Event object once the aggregation window has passed', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api, { aggregationWindowMs: 30 });
    events.normal(claim, 'Resized', 'now 2Gi');
    await events.flush();
    await sleep(60);
    events.normal(claim, 'Resized', 'now 2Gi');
    await events.flush();
    expect(api.created).toHaveLength(2);
    expect(api.series).toHaveLength(0);
  });

  it('never throws: a failed write is logged at warn, and the next repeat writes it with the count', async () => {
    const api = new FakeEventsApi();
    const { events, lines } = recorder(api);
    api.failures.push(new ApiException(500, 'etcdserver: request timed out', {}, {}));
    expect(() => events.warning(claim, 'AttachFailed', 'again')).not.toThrow();
    await events.flush();
    expect(api.created).toHaveLength(0);
    expect(lines.some((l) => l.includes('could not write an event') && l.includes('"level":40'))).toBe(true);
    events.warning(claim, 'AttachFailed', 'again');
    await events.flush();
    expect(api.created).toHaveLength(1);
    expect(created(api).event.series?.count).toBe(2);
  });

  it('never throws on a bad subject or type; logs instead', async () => {
    const api = new FakeEventsApi();
    const { events, lines } = recorder(api);
    expect(() => events.normal({ kind: 'Pod' }, 'Started', 'x')).not.toThrow();
    expect(() =>
      events.record(claim, { type: 'Info' as never, reason: 'Started', message: 'x' }),
    ).not.toThrow();
    await events.flush();
    expect(api.created).toHaveLength(0);
    expect(lines.filter((l) => l.includes('could not record an event'))).toHaveLength(2);
  });

  it('warns about a reason that is not CamelCase but still records it', async () => {
    const api = new FakeEventsApi();
    const { events, lines } = recorder(api);
    events.normal(claim, 'not camel', 'x');
    await events.flush();
    expect(api.created).toHaveLength(1);
    expect(lines.some((l) => l.includes('CamelCase'))).toBe(true);
  });

  it('recreates an event that expired before a repeat', async () => {
    const api = new FakeEventsApi();
    const { events } = recorder(api);
    events.warning(claim, 'AttachFailed', 'again');
    await events.flush();
    api.gone.add(created(api).event.metadata?.name ?? '');
    events.warning(claim, 'AttachFailed', 'again');
    await events.flush();
    expect(api.created).toHaveLength(2);
    expect(created(api, 1).event.series?.count).toBe(2);
  });

  it('forgets the least recently seen events beyond its memory limit', async () => {
    const api = new FakeEventsApi();
    const events = new EventRecorder({ api, maxRemembered: 2, seriesUpdateIntervalMs: 0 });
    events.normal(claim, 'A', 'a');
    events.normal(claim, 'B', 'b');
    events.normal(claim, 'C', 'c');
    await events.flush();
    events.normal(claim, 'A', 'a'); // forgotten: a new object
    events.normal(claim, 'C', 'c'); // remembered: a series update
    await events.flush();
    expect(api.created.map((c) => c.event.reason)).toEqual(['A', 'B', 'C', 'A']);
    expect(api.series).toHaveLength(1);
  });
});
