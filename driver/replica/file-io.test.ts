import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INLINE_WRITE_MAX, InlineWrites } from './file-io.js';

describe('InlineWrites', () => {
  let dir: string;
  let fd: number;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-inline-'));
    fd = openSync(join(dir, 'data'), 'w+');
  });
  afterEach(async () => {
    closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  });

  it('writes small buffers on the calling thread and large ones through the pool, all landing', async () => {
    const writes = new InlineWrites();
    await writes.write(fd, 4096, Buffer.alloc(4096, 1));
    await writes.write(fd, 0, Buffer.alloc(INLINE_WRITE_MAX + 1, 2));
    expect(writes.inlineWrites).toBe(1);
    const data = readFileSync(join(dir, 'data'));
    expect(data.length).toBe(INLINE_WRITE_MAX + 1);
    expect(data.every((b) => b === 2)).toBe(true); // the large write came second and covers the first
  });

  it('sends writes to the pool for the back-off time after one slow inline write', async () => {
    let clock = 0;
    // Every reading of the clock moves it 5 ms: each inline write looks 5 ms long.
    const writes = new InlineWrites({ slowMs: 2, backoffMs: 100, now: () => (clock += 5) });
    await writes.write(fd, 0, Buffer.alloc(512, 1));
    expect(writes.slowWrites).toBe(1);
    await writes.write(fd, 512, Buffer.alloc(512, 2));
    expect(writes.inlineWrites).toBe(1); // within the back-off: the pool wrote it
    clock += 200;
    await writes.write(fd, 1024, Buffer.alloc(512, 3));
    expect(writes.inlineWrites).toBe(2); // back-off over: inline again
    expect([...readFileSync(join(dir, 'data'))].filter((b, i) => b === Math.floor(i / 512) + 1).length).toBe(
      1536,
    );
  });

  it('rejects (never throws) when the descriptor is bad', async () => {
    await expect(new InlineWrites().write(1_000_000, 0, Buffer.alloc(8))).rejects.toMatchObject({
      code: 'EBADF',
    });
  });
});
