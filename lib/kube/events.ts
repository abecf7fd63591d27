/**
 * Kubernetes Events about the objects Tandem manages (a PersistentVolumeClaim, a Volume …), the
 * ones `kubectl describe` and `kubectl events` show.
 *
 * Written through events.k8s.io/v1 rather than core/v1: it is the current Events API (core/v1
 * Events are kept for compatibility), the apiserver validates the fields we rely on there
 * (reportingController, reportingInstance, action, eventTime, note ≤ 1024 bytes, type Normal or
 * Warning), and its `series` is the defined way to say "this happened again" without creating a
 * new object. Both APIs share one storage, so the events still show under core/v1 (and in
 * `kubectl describe`, which prints "(xN over …)" from the series).
 *
 * Repeats of an identical event (same object, type, reason, action and note) within the
 * aggregation window update the first one's series (count, lastObservedTime) instead of creating
 * another object; series updates are sent at most once per `seriesUpdateIntervalMs` per event, the
 * count in between accumulating. Recording never throws and never blocks the caller: a write that
 * fails is logged at warn and forgotten (Events are best effort by design).
 */
import { hostname } from 'node:os';
import {
  ApiException,
  EventsV1Api,
  type EventsV1Event,
  type EventsV1EventSeries,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  V1MicroTime,
  type V1ObjectReference,
} from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';

export const REPORTING_CONTROLLER = 'csi.tandem.dev';

/** The apiserver's limits (bytes): note 1024, reason and action 128, reportingInstance 128. */
export const NOTE_LIMIT = 1024;
const REASON_LIMIT = 128;
const ACTION_LIMIT = 128;
const INSTANCE_LIMIT = 128;
/** Where events about cluster-scoped objects (a Volume, a PersistentVolume, a Node) are written. */
const CLUSTER_SCOPED_EVENT_NAMESPACE = 'default';

export type EventType = 'Normal' | 'Warning';

/** The object an event is about: the object itself, or a reference to it. */
export type EventSubject = KubernetesObject | V1ObjectReference;

export interface EventDetails {
  type: EventType;
  /** Why, in CamelCase (e.g. ProvisioningFailed); what `kubectl get events` shows as REASON. */
  reason: string;
  /** What happened, for a human; truncated to 1024 bytes. */
  message: string;
  /** What was being done (e.g. Provision, Attach, Migrate); defaults to the reason. */
  action?: string;
}

/** The write operations the recorder needs; KubeEventsApi talks to the apiserver, tests use a fake. */
export interface EventsApi {
  create(namespace: string, event: EventsV1Event): Promise<EventsV1Event>;
  /** Rejects with a 404 ApiException when the event is gone (expired or deleted). */
  updateSeries(namespace: string, name: string, series: EventsV1EventSeries): Promise<EventsV1Event>;
}

export class KubeEventsApi implements EventsApi {
  readonly #api: EventsV1Api;

  constructor(kc: KubeConfig) {
    this.#api = kc.makeApiClient(EventsV1Api);
  }

  create(namespace: string, event: EventsV1Event): Promise<EventsV1Event> {
    return this.#api.createNamespacedEvent({ namespace, body: event });
  }

  updateSeries(namespace: string, name: string, series: EventsV1EventSeries): Promise<EventsV1Event> {
    return this.#api.patchNamespacedEvent(
      { namespace, name, body: { series } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
}

export interface EventRecorderOptions {
  /** Give either a kubeconfig or an EventsApi (tests). */
  kc?: KubeConfig;
  api?: EventsApi;
  /** Which controller writes (events.k8s.io reportingController). Default csi.tandem.dev. */
  reportingController?: string;
  /** Which instance of it (e.g. the pod name). Default `<controller>-<hostname>`. */
  reportingInstance?: string;
  /** Identical events this close together are one event with a count. Default 10 minutes. */
  aggregationWindowMs?: number;
  /** Minimum time between two series updates of one event. Default 5 s. */
  seriesUpdateIntervalMs?: number;
  /** How many distinct recent events are remembered for aggregation. Default 1024. */
  maxRemembered?: number;
  log?: Logger;
}

interface Occurrence {
  namespace: string;
  regarding: V1ObjectReference;
  details: Required<EventDetails>;
  /** The Event object's name once created. */
  name: string | undefined;
  count: number;
  /** count as last written to the API. */
  written: number;
  firstAt: number;
  lastAt: number;
  lastWriteAt: number;
  /** A write for this occurrence is queued (behind the one running, if any). */
  queued: boolean;
  timer: NodeJS.Timeout | undefined;
  chain: Promise<void>;
}

/** Cuts a string to at most `limit` UTF-8 bytes on a character boundary, marking the cut with "…". */
export function truncateUtf8(text: string, limit: number): string {
  if (Buffer.byteLength(text, 'utf8') <= limit) return text;
  const ellipsis = '…';
  let budget = limit - Buffer.byteLength(ellipsis, 'utf8');
  let out = '';
  for (const char of text) {
    const size = Buffer.byteLength(char, 'utf8');
    if (size > budget) break;
    out += char;
    budget -= size;
  }
  return out + ellipsis;
}

const CAMEL_CASE = /^[A-Z][A-Za-z0-9]*$/;

function reference(subject: EventSubject): V1ObjectReference {
  if ('metadata' in subject && subject.metadata) {
    const object = subject as KubernetesObject;
    return {
      apiVersion: object.apiVersion,
      kind: object.kind,
      name: object.metadata?.name,
      namespace: object.metadata?.namespace,
      uid: object.metadata?.uid,
      resourceVersion: object.metadata?.resourceVersion,
    };
  }
  const ref = subject as V1ObjectReference;
  return {
    apiVersion: ref.apiVersion,
    kind: ref.kind,
    name: ref.name,
    namespace: ref.namespace,
    uid: ref.uid,
    resourceVersion: ref.resourceVersion,
    fieldPath: ref.fieldPath,
  };
}

/** `<object name>.<hex nanoseconds>`, like client-go, within the 253-character name limit. */
function eventName(objectName: string, at: number): string {
  const suffix = (BigInt(at) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000))).toString(16);
  return `${objectName.slice(0, 253 - suffix.length - 1)}.${suffix}`;
}

export class EventRecorder {
  readonly reportingController: string;
  readonly reportingInstance: string;
  readonly #api: EventsApi;
  readonly #windowMs: number;
  readonly #seriesIntervalMs: number;
  readonly #maxRemembered: number;
  readonly #log: Logger;
  /** Recent events by identity, least recently seen first. */
  readonly #recent = new Map<string, Occurrence>();
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: EventRecorderOptions) {
    const api = options.api ?? (options.kc ? new KubeEventsApi(options.kc) : undefined);
    if (!api) throw new Error('EventRecorder needs a kubeconfig (kc) or an EventsApi (api)');
    this.#api = api;
    this.reportingController = options.reportingController ?? REPORTING_CONTROLLER;
    this.reportingInstance = truncateUtf8(
      options.reportingInstance ?? `${this.reportingController}-${hostname()}`,
      INSTANCE_LIMIT,
    );
    this.#windowMs = options.aggregationWindowMs ?? 10 * 60_000;
    this.#seriesIntervalMs = options.seriesUpdateIntervalMs ?? 5_000;
    this.#maxRemembered = options.maxRemembered ?? 1024;
    this.#log = (options.log ?? silentLogger()).child({ events: this.reportingController });
  }

  normal(subject: EventSubject, reason: string, message: string, action?: string): void {
    this.record(subject, { type: 'Normal', reason, message, action });
  }

  warning(subject: EventSubject, reason: string, message: string, action?: string): void {
    this.record(subject, { type: 'Warning', reason, message, action });
  }

  /** Records one occurrence; returns at once, the write happens in the background. */
  record(subject: EventSubject, details: EventDetails): void {
    try {
      this.#record(subject, details);
    } catch (err) {
      this.#log.warn({ err, reason: details?.reason }, 'could not record an event');
    }
  }

  /** Sends every pending write (including throttled series updates) and waits for them. */
  async flush(): Promise<void> {
    for (const occurrence of this.#recent.values()) {
      if (occurrence.timer) {
        clearTimeout(occurrence.timer);
        occurrence.timer = undefined;
        this.#enqueue(occurrence);
      }
    }
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight]);
  }

  #record(subject: EventSubject, details: EventDetails): void {
    const regarding = reference(subject);
    if (!regarding.name || !regarding.kind) throw new Error('the event subject has no kind or name');
    if (details.type !== 'Normal' && details.type !== 'Warning')
      throw new Error(`event type must be Normal or Warning, not ${String(details.type)}`);
    if (!CAMEL_CASE.test(details.reason)) {
      this.#log.warn({ reason: details.reason }, 'event reasons should be CamelCase');
    }
    const full: Required<EventDetails> = {
      type: details.type,
      reason: truncateUtf8(details.reason, REASON_LIMIT),
      message: truncateUtf8(details.message, NOTE_LIMIT),
      action: truncateUtf8(details.action ?? details.reason, ACTION_LIMIT),
    };
    const key = JSON.stringify([
      regarding.apiVersion,
      regarding.kind,
      regarding.namespace,
      regarding.name,
      regarding.uid,
      full.type,
      full.reason,
      full.action,
      full.message,
    ]);
    const now = Date.now();
    const known = this.#recent.get(key);
    if (known && now - known.lastAt <= this.#windowMs) {
      known.count++;
      known.lastAt = now;
      this.#touch(key, known);
      this.#scheduleSeriesUpdate(known, now);
      return;
    }
    if (known?.timer) clearTimeout(known.timer);
    const occurrence: Occurrence = {
      namespace: regarding.namespace || CLUSTER_SCOPED_EVENT_NAMESPACE,
      regarding,
      details: full,
      name: undefined,
      count: 1,
      written: 0,
      firstAt: now,
      lastAt: now,
      lastWriteAt: 0,
      queued: false,
      timer: undefined,
      chain: Promise.resolve(),
    };
    this.#touch(key, occurrence);
    this.#enqueue(occurrence);
  }

  /** Moves the entry to the most-recent end and forgets the oldest beyond the limit. */
  #touch(key: string, occurrence: Occurrence): void {
    this.#recent.delete(key);
    this.#recent.set(key, occurrence);
    while (this.#recent.size > this.#maxRemembered) {
      const [oldestKey, oldest] = this.#recent.entries().next().value as [string, Occurrence];
      // A throttled update still goes out; the entry just stops aggregating.
      if (oldest.timer) {
        clearTimeout(oldest.timer);
        oldest.timer = undefined;
        this.#enqueue(oldest);
      }
      this.#recent.delete(oldestKey);
    }
  }

  #scheduleSeriesUpdate(occurrence: Occurrence, now: number): void {
    if (occurrence.timer || occurrence.queued) return; // the pending write will carry the new count
    const wait = occurrence.lastWriteAt + this.#seriesIntervalMs - now;
    if (occurrence.name === undefined || wait <= 0) {
      this.#enqueue(occurrence);
      return;
    }
    occurrence.timer = setTimeout(() => {
      occurrence.timer = undefined;
      this.#enqueue(occurrence);
    }, wait);
    occurrence.timer.unref();
  }

  /** Queues one write for the occurrence behind the previous one; concurrent repeats share it. */
  #enqueue(occurrence: Occurrence): void {
    if (occurrence.queued) return;
    occurrence.queued = true;
    const write = occurrence.chain.then(async () => {
      occurrence.queued = false;
      await this.#write(occurrence);
    });
    occurrence.chain = write;
    this.#inFlight.add(write);
    void write.finally(() => this.#inFlight.delete(write));
  }

  async #write(occurrence: Occurrence): Promise<void> {
    if (occurrence.name !== undefined && occurrence.count === occurrence.written) return;
    const count = occurrence.count;
    const lastObservedTime = new V1MicroTime(occurrence.lastAt);
    occurrence.lastWriteAt = Date.now();
    try {
      if (occurrence.name !== undefined) {
        try {
          await this.#api.updateSeries(occurrence.namespace, occurrence.name, { count, lastObservedTime });
          occurrence.written = count;
          return;
        } catch (err) {
          if (!(err instanceof ApiException && err.code === 404)) throw err;
          occurrence.name = undefined; // expired (Events have a TTL) or deleted: write it anew
        }
      }
      const name = eventName(occurrence.regarding.name ?? 'event', occurrence.firstAt);
      const { type, reason, message, action } = occurrence.details;
      await this.#api.create(occurrence.namespace, {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name, namespace: occurrence.namespace },
        eventTime: new V1MicroTime(occurrence.firstAt),
        // The API wants a series only for repeats (count ≥ 2).
        series: count > 1 ? { count, lastObservedTime } : undefined,
        regarding: occurrence.regarding,
        type,
        reason,
        action,
        note: message,
        reportingController: this.reportingController,
        reportingInstance: this.reportingInstance,
      });
      occurrence.name = name;
      occurrence.written = count;
    } catch (err) {
      this.#log.warn(
        {
          err,
          reason: occurrence.details.reason,
          regarding: `${occurrence.regarding.kind}/${occurrence.regarding.namespace ?? ''}/${occurrence.regarding.name}`,
        },
        'could not write an event',
      );
    }
  }
}
