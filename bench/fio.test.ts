import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { topSelfTime } from './cpuprofile.js';
import { nbdUri, parseFioJson } from './fio.js';

const direction = (ioBytes: number, iops: number) => ({
  io_bytes: ioBytes,
  iops,
  bw_bytes: ioBytes / 10,
  total_ios: ioBytes / 4096,
  clat_ns: { mean: 250_000, percentile: { '50.000000': 200_000, '99.000000': 900_000 } },
});

describe('parseFioJson', () => {
  it('skips the nbd engine banner and reads the active direction', () => {
    const json = JSON.stringify({
      jobs: [{ error: 0, usr_cpu: 5, sys_cpu: 20, read: direction(0, 0), write: direction(40960, 1234.5) }],
    });
    const r = parseFioJson(`fio: connected to NBD server\n${json}`);
    expect(r.iops).toBe(1234.5);
    expect(r.mibPerSec).toBeCloseTo(4096 / 2 ** 20);
    expect(r.p50Us).toBe(200);
    expect(r.p99Us).toBe(900);
    expect(r.meanUs).toBe(250);
    expect(r.ios).toBe(10);
    expect(r.fioCpu).toBe(25);
  });

  it('refuses a failed job and output without JSON', () => {
    const failed = JSON.stringify({
      jobs: [{ error: 5, usr_cpu: 0, sys_cpu: 0, read: direction(0, 0), write: direction(0, 0) }],
    });
    expect(() => parseFioJson(failed)).toThrow('error 5');
    expect(() => parseFioJson('fio: connection refused')).toThrow('no JSON');
  });

  it('builds nbd+unix URIs', () => {
    expect(nbdUri('/tmp/s.sock', 'vol')).toBe('nbd+unix:///vol?socket=/tmp/s.sock');
    expect(nbdUri('/tmp/s.sock')).toBe('nbd+unix:///?socket=/tmp/s.sock');
  });
});

describe('topSelfTime', () => {
  it('sums sample time per function, largest first', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-prof-'));
    try {
      const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber });
      const profile = {
        nodes: [
          { id: 1, callFrame: frame('(root)') },
          { id: 2, callFrame: frame('encode', 'file:///x/encode.js', 9) },
          { id: 3, callFrame: frame('(idle)') },
        ],
        startTime: 0,
        endTime: 4000,
        samples: [2, 2, 3, 2],
        timeDeltas: [0, 1000, 1000, 1000],
      };
      await writeFile(join(dir, 'a.cpuprofile'), JSON.stringify(profile));
      const top = await topSelfTime(dir, 2);
      expect(top.map((t) => t.fn)).toEqual(['encode encode.js:10', '(idle)']);
      expect(top[0]?.percent).toBe(75);
      expect(await topSelfTime(join(dir, 'missing'))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
