import {
  chmodSync,
  closeSync,
  mkdtempSync,
  openSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsUtil, locateFsUtil } from './fsutil.js';

const BLOCK = 64 * 1024;
let dir: string;
let fsutil: FsUtil;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tandem-fsutil-test-'));
  fsutil = new FsUtil();
});

afterAll(async () => {
  await fsutil.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes one BLOCK of data at `position`, leaving the rest of the file as it is. */
function writeBlockAt(path: string, position: number): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(BLOCK, 0x5a), 0, BLOCK, position);
  closeSync(fd);
}

describe('FsUtil', () => {
  it('finds the binary the build script links', () => {
    expect(locateFsUtil()).toMatch(/tandem-fsutil$/);
  });

  it('lists allocated extents, skipping holes, merged and clipped to the range', async () => {
    const path = join(dir, 'extents');
    writeFileSync(path, '');
    truncateSync(path, 32 * BLOCK);
    for (const b of [2, 3, 9]) writeBlockAt(path, b * BLOCK);
    expect(await fsutil.extents(path, 0, 32 * BLOCK)).toEqual([
      { offset: 2 * BLOCK, length: 2 * BLOCK },
      { offset: 9 * BLOCK, length: BLOCK },
    ]);
    expect(await fsutil.extents(path, 3 * BLOCK + 10, 6 * BLOCK)).toEqual([
      { offset: 3 * BLOCK + 10, length: BLOCK - 10 },
      { offset: 9 * BLOCK, length: 10 },
    ]);
    expect(await fsutil.extents(path, 10 * BLOCK, 22 * BLOCK)).toEqual([]);
    expect(await fsutil.extents(path, 0, 0)).toEqual([]);
  });

  it('punches a hole that reads as zeroes and keeps the size', async () => {
    const path = join(dir, 'punch');
    writeFileSync(path, Buffer.alloc(4 * BLOCK, 0x11));
    await fsutil.punchHole(path, BLOCK, 2 * BLOCK);
    const data = await readFile(path);
    expect(data.length).toBe(4 * BLOCK);
    expect(data.subarray(BLOCK, 3 * BLOCK).every((b) => b === 0)).toBe(true);
    expect(data[0]).toBe(0x11);
    expect(data[3 * BLOCK]).toBe(0x11);
    expect(await fsutil.extents(path, 0, 4 * BLOCK)).toEqual([
      { offset: 0, length: BLOCK },
      { offset: 3 * BLOCK, length: BLOCK },
    ]);
  });

  it('answers many concurrent requests, each with its own reply', async () => {
    const path = join(dir, 'many');
    writeFileSync(path, '');
    truncateSync(path, 64 * BLOCK);
    for (let b = 0; b < 64; b += 2) writeBlockAt(path, b * BLOCK);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => fsutil.extents(path, (i % 64) * BLOCK, BLOCK)),
    );
    results.forEach((found, i) => {
      const b = i % 64;
      expect(found).toEqual(b % 2 === 0 ? [{ offset: b * BLOCK, length: BLOCK }] : []);
    });
  });

  it('carries the errno code of a failed request', async () => {
    const missing = join(dir, 'missing');
    await expect(fsutil.extents(missing, 0, 1)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fsutil.punchHole(missing, 0, 1)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses negative or fractional ranges before asking the helper', async () => {
    await expect(fsutil.extents(dir, -1, 1)).rejects.toBeInstanceOf(RangeError);
    await expect(fsutil.punchHole(dir, 0, 1.5)).rejects.toBeInstanceOf(RangeError);
  });

  it('restarts the helper on the next call after it died', async () => {
    const path = join(dir, 'restart');
    await writeFile(path, Buffer.alloc(BLOCK, 1));
    await fsutil.extents(path, 0, BLOCK);
    const first = fsutil.pid;
    expect(first).toBeDefined();
    process.kill(first as number, 'SIGKILL');
    await waitFor(() => fsutil.pid === undefined);
    expect(await fsutil.extents(path, 0, BLOCK)).toEqual([{ offset: 0, length: BLOCK }]);
    expect(fsutil.pid).not.toBe(first);
  });

  it('rejects pending requests when the helper dies, with its stderr in the message', async () => {
    const script = fakeHelper('dies', 'read line; echo "disk on fire" >&2; exit 3');
    const broken = new FsUtil({ binary: script });
    try {
      await expect(broken.extents(dir, 0, 1)).rejects.toMatchObject({
        code: 'EIO',
        message: expect.stringMatching(/exited \(code 3\).*disk on fire/s),
      });
    } finally {
      await broken.close();
    }
  });

  it('fails a request that gets no answer in time', async () => {
    const script = fakeHelper('silent', 'exec cat >/dev/null');
    const silent = new FsUtil({ binary: script, timeoutMs: 100 });
    try {
      await expect(silent.punchHole(dir, 0, 1)).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    } finally {
      await silent.close();
    }
    expect(silent.pid).toBeUndefined();
  });

  it('says clearly when the binary cannot be started', async () => {
    const missing = new FsUtil({ binary: join(dir, 'no-such-binary') });
    try {
      await expect(missing.extents(dir, 0, 1)).rejects.toThrow(/no-such-binary|cannot start/);
    } finally {
      await missing.close();
    }
  });
});

function fakeHelper(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(condition()).toBe(true);
}
