import net from 'node:net';
import { RpcConnection, RpcConnectionError, RpcRejectedError } from './rpc.js';
import { type XdrReader, XdrWriter } from './xdr.js';

const auth = { machineName: 'test', uid: 0, gid: 0 };

/** A server that answers each call with `reply(xid)`, written in slices of `slice` bytes. */
async function server(reply: (xid: number) => Buffer, slice = Number.POSITIVE_INFINITY) {
  const sockets: net.Socket[] = [];
  const srv = net.createServer((socket) => {
    sockets.push(socket);
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4) {
        const length = pending.readUInt32BE(0) & 0x7fffffff;
        if (pending.length < 4 + length) return;
        const xid = pending.readUInt32BE(4);
        pending = pending.subarray(4 + length);
        const bytes = reply(xid);
        for (let at = 0; at < bytes.length; at += slice) socket.write(bytes.subarray(at, at + slice));
      }
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => srv.close(resolve));
    },
  };
}

/** An accepted reply carrying `result`, split into two record-marking fragments. */
function acceptedReply(xid: number, result: Buffer, acceptStatus = 0): Buffer {
  const body = new XdrWriter()
    .uint32(xid)
    .uint32(1)
    .uint32(0)
    .uint32(0)
    .uint32(0)
    .uint32(acceptStatus)
    .raw(result)
    .toBuffer();
  const half = body.length / 2 - ((body.length / 2) % 4);
  const first = Buffer.alloc(4);
  first.writeUInt32BE(half);
  const second = Buffer.alloc(4);
  second.writeUInt32BE((0x80000000 | (body.length - half)) >>> 0);
  return Buffer.concat([first, body.subarray(0, half), second, body.subarray(half)]);
}

test('a reply in fragments, delivered a byte at a time, reaches its call', async () => {
  const srv = await server(
    (xid) => acceptedReply(xid, new XdrWriter().uint32(42).string('ok').toBuffer()),
    1,
  );
  const connection = await RpcConnection.connect({ host: '127.0.0.1', port: srv.port }, auth);
  const [a, b] = await Promise.all([
    connection.call(100003, 4, 1, Buffer.alloc(0), 2_000),
    connection.call(100003, 4, 1, Buffer.alloc(0), 2_000),
  ]);
  for (const r of [a, b] as XdrReader[]) {
    expect(r.uint32()).toBe(42);
    expect(r.string()).toBe('ok');
  }
  connection.close();
  await srv.close();
});

test('a refused call names the RPC reason', async () => {
  const srv = await server((xid) => acceptedReply(xid, Buffer.alloc(0), 1));
  const connection = await RpcConnection.connect({ host: '127.0.0.1', port: srv.port }, auth);
  await expect(connection.call(100003, 4, 1, Buffer.alloc(0), 2_000)).rejects.toThrow(RpcRejectedError);
  await expect(connection.call(100003, 4, 1, Buffer.alloc(0), 2_000)).rejects.toThrow(/PROG_UNAVAIL/);
  connection.close();
  await srv.close();
});

test('a server that goes away fails the calls in flight with RpcConnectionError', async () => {
  const srv = await server(() => Buffer.alloc(0));
  const connection = await RpcConnection.connect({ host: '127.0.0.1', port: srv.port }, auth);
  const call = connection.call(100003, 4, 1, Buffer.alloc(0), 5_000);
  await new Promise((resolve) => setTimeout(resolve, 50));
  await srv.close();
  await expect(call).rejects.toThrow(RpcConnectionError);
  expect(connection.closed).toBe(true);
});

test('no reply within the deadline is an error, and nothing listening is a clear one', async () => {
  const srv = await server(() => Buffer.alloc(0));
  const connection = await RpcConnection.connect({ host: '127.0.0.1', port: srv.port }, auth);
  await expect(connection.call(100003, 4, 1, Buffer.alloc(0), 100)).rejects.toThrow(/within 100 ms/);
  connection.close();
  const port = srv.port;
  await srv.close();
  await expect(RpcConnection.connect({ host: '127.0.0.1', port }, auth)).rejects.toThrow(
    /cannot connect to 127.0.0.1/,
  );
});
