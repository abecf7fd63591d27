import type { BlockDevice } from '../../driver/nbd/device.js';
import { NbdServer } from '../../driver/nbd/server.js';

/** A BlockDevice backed by a Buffer, for tests and benchmarks of the NBD server. */
export class MemoryBlockDevice implements BlockDevice {
  readonly data: Buffer;
  flushes = 0;
  fuaWrites = 0;

  constructor(size: number) {
    this.data = Buffer.alloc(size);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    // A copy, like a real device: later writes must not change data already being sent.
    return Buffer.from(this.data.subarray(offset, offset + length));
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    data.copy(this.data, offset);
    if (fua) this.fuaWrites++;
  }

  async flush(): Promise<void> {
    this.flushes++;
  }

  async trim(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
  }
}

/**
 * Tandem's NBD server over a unix socket in front of a Buffer: checks the codec and the server
 * against real clients (libnbd's nbdinfo and nbdcopy, fio).
 */
export interface MemoryNbdServer {
  data: Buffer;
  server: NbdServer;
  close(): Promise<void>;
}

export async function startMemoryNbdServer(
  socketPath: string,
  exportName: string,
  size: number,
): Promise<MemoryNbdServer> {
  const device = new MemoryBlockDevice(size);
  const server = new NbdServer({
    exportName,
    size,
    device,
    multiConn: true,
    description: 'Tandem test export',
  });
  await server.listenUnix(socketPath);
  return { data: device.data, server, close: () => server.close() };
}
