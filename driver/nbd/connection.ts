// One NBD client connection: the handshake, then the transmission phase with requests executed
// concurrently against the device and simple replies sent as each finishes (the spec allows any
// order; clients match them by cookie). This is the data path, so the hot loop avoids copies and
// batches replies into one writev per event-loop turn.
//
// WRITE payloads are not copied: the decoder slices them out of the socket's chunks, and net.Socket
// allocates a fresh Buffer for every read (we never pass the `onread` option, the only way to make
// it reuse one), so a slice stays valid for as long as the device holds it. A small payload does pin
// its whole chunk (≤ 64 KiB) until released; that is the price of not copying.

import type { Socket } from 'node:net';
import { BatchedWriter } from '../../lib/batched-writer.js';
import { ioBuffers } from '../../lib/io-buffers.js';
import type { Logger } from '../../lib/log.js';
import { commandName, NBD_CMD, NBD_CMD_FLAG, NBD_ERRNO } from './constants.js';
import { type BlockDevice, type NbdOp, nbdErrno } from './device.js';
import { type HandshakeConfig, type HandshakeEvent, HandshakeParser } from './handshake.js';
import {
  type DecodeEvent,
  encodeSimpleReplyHeader,
  type NbdRequest,
  RequestDecoder,
} from './transmission.js';

export type RequestHook = (op: NbdOp, bytes: number, seconds: number, ok: boolean) => void;

export interface ConnectionOptions {
  device: BlockDevice;
  handshake: HandshakeConfig;
  /** Stop reading requests while this many are being executed. */
  maxInFlight: number;
  /** Stop reading requests while the bytes of executing requests plus unsent replies exceed this. */
  maxQueuedBytes: number;
  handshakeTimeoutMs: number;
  /** After we end our side (DISC, client EOF), destroy the socket if it has not closed by then. */
  lingerMs: number;
  logger: Logger;
  /** Read on every completion, so the owner may attach or replace its hook at any time. */
  hooks: { onRequest?: RequestHook | undefined };
}

type Phase = 'handshake' | 'transmission' | 'ending' | 'closed';

/** Warn about the first few device errors of a connection; a failing device would flood the log. */
const LOUD_DEVICE_ERRORS = 3;

export class NbdConnection {
  private readonly socket: Socket;
  private readonly out: BatchedWriter;
  private readonly options: ConnectionOptions;
  private readonly log: Logger;
  private readonly maxQueuedBytes: number;
  private phase: Phase = 'handshake';
  private readonly handshake: HandshakeParser;
  private decoder: RequestDecoder | undefined;
  /** Decoded requests waiting for room; a queue with a moving head (shift() is O(n)). */
  private backlog: (NbdRequest | undefined)[] = [];
  private head = 0;
  private inFlight = 0;
  private inFlightBytes = 0;
  private reading = true;
  private deviceErrors = 0;
  private timer: NodeJS.Timeout | undefined;
  private resolveDone: () => void = () => {};
  /** Resolves once the socket has closed and no request of this connection is still executing. */
  readonly done: Promise<void>;

  constructor(socket: Socket, options: ConnectionOptions) {
    this.socket = socket;
    this.out = new BatchedWriter(socket);
    this.options = options;
    this.log = options.logger;
    // 'drain' only follows a write() that returned false, i.e. a buffer past the high-water mark;
    // a lower pause threshold could stall with nothing left to wake us.
    this.maxQueuedBytes = Math.max(options.maxQueuedBytes, socket.writableHighWaterMark + 1);
    this.handshake = new HandshakeParser(options.handshake);
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.pump());
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.log.debug({ err }, 'NBD connection error'));
    socket.on('close', () => this.onClose());
    this.timer = setTimeout(() => {
      this.log.warn('NBD handshake timed out');
      socket.destroy();
    }, options.handshakeTimeoutMs);
    this.timer.unref();
    this.onHandshake(this.handshake.start());
  }

  get open(): boolean {
    return this.phase !== 'closed';
  }

  /**
   * Server shutdown: refuse what has not started with ESHUTDOWN, let executing requests reply,
   * then close. The owner bounds the wait and calls destroy().
   */
  shutdown(): void {
    if (this.phase === 'handshake') {
      this.socket.destroy();
      return;
    }
    if (this.phase !== 'transmission') return;
    for (let i = this.head; i < this.backlog.length; i++) {
      const request = this.backlog[i];
      if (request) this.reply(request.cookie, NBD_ERRNO.ESHUTDOWN);
    }
    this.backlog = [];
    this.head = 0;
    this.beginEnding();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.phase === 'handshake') this.onHandshake(this.handshake.push(chunk));
    else if (this.phase === 'transmission' && this.decoder) this.onDecoded(this.decoder.push(chunk));
    // Requests after DISC, EOF or shutdown would get no reply before we close: ignore them.
  }

  private onHandshake(events: HandshakeEvent[]): void {
    for (const event of events) {
      if (event.type === 'send') {
        this.socket.write(event.data);
      } else if (event.type === 'close') {
        this.log.debug({ reason: event.reason }, 'NBD handshake ended');
        this.endSocket();
        return;
      } else {
        clearTimeout(this.timer);
        this.timer = undefined;
        this.phase = 'transmission';
        this.decoder = new RequestDecoder({
          size: event.size,
          ...(event.limit === undefined ? {} : { limit: event.limit }),
          readOnly: event.readOnly,
          maxPayload: this.options.handshake.maxPayload,
        });
        this.log.debug({ export: event.exportName, flags: event.transmissionFlags }, 'NBD transmission');
        if (event.rest.length > 0) this.onDecoded(this.decoder.push(event.rest));
        return;
      }
    }
  }

  private onDecoded(events: DecodeEvent[]): void {
    for (const event of events) {
      if (event.type === 'request') {
        if (event.request.command === NBD_CMD.DISC) this.beginEnding();
        else this.backlog.push(event.request);
      } else if (event.type === 'error') {
        // Refused before execution (range, flags, read-only): answer at once, outside the limits.
        this.log.debug({ errno: event.errno, reason: event.message }, 'NBD request refused');
        this.reply(event.cookie, event.errno);
      } else {
        this.log.warn({ reason: event.message }, 'NBD protocol violation, dropping the connection');
        this.socket.destroy();
        return;
      }
    }
    this.pump();
  }

  /** Starts what the limits allow, then reads more only if everything decoded has started. */
  private pump(): void {
    while (this.head < this.backlog.length && this.hasRoom()) {
      const request = this.backlog[this.head];
      this.backlog[this.head++] = undefined;
      if (request) this.start(request);
    }
    if (this.head === this.backlog.length && this.head > 0) {
      this.backlog = [];
      this.head = 0;
    }
    const wantMore = this.phase === 'transmission' && this.backlog.length === 0 && this.hasRoom();
    if (wantMore !== this.reading && !this.socket.destroyed) {
      this.reading = wantMore;
      if (wantMore) this.socket.resume();
      else this.socket.pause();
    }
    if (this.phase === 'ending' && this.inFlight === 0 && this.backlog.length === 0) this.endSocket();
  }

  private hasRoom(): boolean {
    return (
      this.inFlight < this.options.maxInFlight &&
      this.inFlightBytes + this.socket.writableLength < this.maxQueuedBytes
    );
  }

  private start(request: NbdRequest): void {
    const cost = request.command === NBD_CMD.READ || request.command === NBD_CMD.WRITE ? request.length : 0;
    this.inFlight++;
    this.inFlightBytes += cost;
    this.execute(request, cost).catch((err: unknown) =>
      this.log.error({ err }, 'NBD request handling failed'),
    );
  }

  private async execute(request: NbdRequest, cost: number): Promise<void> {
    const started = performance.now();
    const offset = Number(request.offset);
    const { length } = request;
    const fua = (request.flags & NBD_CMD_FLAG.FUA) !== 0;
    const device = this.options.device;
    let op: NbdOp = 'read';
    let data: Buffer | undefined;
    let errno: number = NBD_ERRNO.OK;
    try {
      switch (request.command) {
        case NBD_CMD.READ:
          data = length === 0 ? Buffer.alloc(0) : await device.read(offset, length);
          if (data.length !== length)
            throw new Error(`device read returned ${data.length} of ${length} bytes`);
          break;
        case NBD_CMD.WRITE: {
          op = 'write';
          const payload = request.payload ?? Buffer.alloc(0);
          await device.write(offset, payload, fua);
          // Every replica holds it now and nothing refers to it (a failed write keeps it: a
          // fenced replica's stuck write may still read it, so it is left to the collector).
          ioBuffers.release(payload);
          break;
        }
        case NBD_CMD.FLUSH:
          op = 'flush';
          await device.flush();
          break;
        case NBD_CMD.TRIM:
          op = 'trim';
          await device.trim(offset, length, fua);
          break;
        case NBD_CMD.WRITE_ZEROES:
          op = 'write_zeroes';
          await device.writeZeroes(offset, length, fua, (request.flags & NBD_CMD_FLAG.NO_HOLE) !== 0);
          break;
        default:
          // The decoder refuses every other command; reaching this is a bug, not a client error.
          throw new Error(`unexpected command ${commandName(request.command)}`);
      }
    } catch (err) {
      errno = nbdErrno(err);
      data = undefined;
      this.onDeviceError(request, errno, err);
    }
    this.inFlight--;
    this.inFlightBytes -= cost;
    this.report(
      op,
      op === 'flush' ? 0 : length,
      (performance.now() - started) / 1000,
      errno === NBD_ERRNO.OK,
    );
    this.reply(request.cookie, errno, data);
    this.pump();
    if (this.phase === 'closed' && this.inFlight === 0) this.resolveDone();
  }

  private onDeviceError(request: NbdRequest, errno: number, err: unknown): void {
    this.deviceErrors++;
    const level = this.deviceErrors <= LOUD_DEVICE_ERRORS ? 'warn' : 'debug';
    const fields = { err, command: commandName(request.command), offset: Number(request.offset), errno };
    this.log[level](fields, 'NBD request failed on the device');
  }

  private report(op: NbdOp, bytes: number, seconds: number, ok: boolean): void {
    const hook = this.options.hooks.onRequest;
    if (!hook) return;
    try {
      hook(op, bytes, seconds, ok);
    } catch (err) {
      // A broken metrics hook must not take the data path down with it.
      this.log.debug({ err }, 'NBD onRequest hook threw');
    }
  }

  /**
   * Replies of one poll phase go out in a single writev (lib/batched-writer.ts). READ data is
   * written as its own chunk behind the header, never copied.
   */
  private reply(cookie: bigint, errno: number, data?: Buffer): void {
    const socket = this.socket;
    if (socket.destroyed || socket.writableEnded) return;
    const header = encodeSimpleReplyHeader(cookie, errno);
    if (data !== undefined && data.length > 0)
      this.out.write([header, data], () => ioBuffers.release(data)); // pooled read buffers go back
    else this.out.write([header]);
  }

  /** DISC, client EOF or shutdown: read nothing more, finish what was received, then close. */
  private beginEnding(): void {
    if (this.phase !== 'transmission') return;
    this.phase = 'ending';
    this.pump();
  }

  private onEnd(): void {
    if (this.phase === 'handshake') this.socket.destroy();
    else this.beginEnding();
  }

  /** Flushes what is queued, then closes; a client that stops reading is cut off after lingerMs. */
  private endSocket(): void {
    if (this.socket.writableEnded || this.socket.destroyed) return;
    this.socket.end(() => this.socket.destroy());
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.socket.destroy(), this.options.lingerMs);
    this.timer.unref();
  }

  private onClose(): void {
    this.phase = 'closed';
    clearTimeout(this.timer);
    // Nobody can receive these replies any more; requests already executing still run to the end.
    this.backlog = [];
    this.head = 0;
    this.log.debug('NBD connection closed');
    if (this.inFlight === 0) this.resolveDone();
  }
}
