import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { NBD_CMD, NBD_ERRNO } from '../../driver/nbd/constants.js';
import { HandshakeParser } from '../../driver/nbd/handshake.js';
import { encodeSimpleReply, type NbdRequest, RequestDecoder } from '../../driver/nbd/transmission.js';

/**
 * An NBD server over a unix socket whose export is a Buffer in memory, built
 * only from Tandem's NBD codec. It exists to check the codec against real
 * clients (libnbd's nbdinfo and nbdcopy, qemu); the engine of the data plane
 * serves replicas instead of a Buffer.
 */
export interface MemoryNbdServer {
  data: Buffer;
  close(): Promise<void>;
}

const MAX_PAYLOAD = 32 * 1024 * 1024;

export async function startMemoryNbdServer(
  socketPath: string,
  exportName: string,
  size: number,
): Promise<MemoryNbdServer> {
  const data = Buffer.alloc(size);
  const exports = new Map([[exportName, { size: BigInt(size), description: 'Tandem test export' }]]);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    serve(socket, data, exports);
  });
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  return {
    data,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(socketPath, { force: true });
    },
  };
}

function serve(socket: Socket, data: Buffer, exports: ReadonlyMap<string, { size: bigint }>): void {
  const handshake = new HandshakeParser({ exports, multiConn: true, maxPayload: MAX_PAYLOAD });
  let decoder: RequestDecoder | undefined;
  const onHandshake = (events: ReturnType<HandshakeParser['push']>) => {
    for (const event of events) {
      if (event.type === 'send') socket.write(event.data);
      else if (event.type === 'close') socket.end();
      else {
        decoder = new RequestDecoder({ size: event.size, maxPayload: MAX_PAYLOAD });
        if (event.rest.length > 0) onRequests(decoder.push(event.rest));
      }
    }
  };
  const onRequests = (events: ReturnType<RequestDecoder['push']>) => {
    for (const event of events) {
      if (event.type === 'request') answer(socket, data, event.request);
      else if (event.type === 'error') socket.write(encodeSimpleReply(event.cookie, event.errno));
      else socket.destroy();
    }
  };
  onHandshake(handshake.start());
  socket.on('data', (chunk: Buffer) =>
    decoder ? onRequests(decoder.push(chunk)) : onHandshake(handshake.push(chunk)),
  );
}

function answer(socket: Socket, data: Buffer, request: NbdRequest): void {
  const offset = Number(request.offset);
  const end = offset + request.length;
  switch (request.command) {
    case NBD_CMD.READ:
      socket.write(encodeSimpleReply(request.cookie, NBD_ERRNO.OK, data.subarray(offset, end)));
      return;
    case NBD_CMD.WRITE:
      request.payload?.copy(data, offset);
      break;
    case NBD_CMD.TRIM:
    case NBD_CMD.WRITE_ZEROES:
      data.fill(0, offset, end);
      break;
    case NBD_CMD.DISC:
      socket.end();
      return;
  }
  socket.write(encodeSimpleReply(request.cookie, NBD_ERRNO.OK));
}
