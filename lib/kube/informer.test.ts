import { EventEmitter } from 'node:events';
import type { KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { type Cache, keepWatching } from './informer.js';

/** Just enough of an informer: start() outcomes are scripted, errors are emitted by the test. */
class ScriptedInformer extends EventEmitter {
  starts = 0;
  stops = 0;
  constructor(private readonly outcomes: ('ok' | 'fail')[]) {
    super();
  }
  async start(): Promise<void> {
    const outcome = this.outcomes[this.starts++] ?? 'ok';
    if (outcome === 'fail') throw new Error('429 storage is (re)initializing');
  }
  async stop(): Promise<void> {
    this.stops++;
  }
}

const asCache = (i: ScriptedInformer) => i as unknown as Cache<KubernetesObject>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('keepWatching', () => {
  it('retries the first start until it succeeds', async () => {
    const informer = new ScriptedInformer(['fail', 'fail', 'ok']);
    const watching = await keepWatching(asCache(informer), { name: 'test', initialBackoffMs: 1 });
    expect(informer.starts).toBe(3);
    await watching.stop();
  });

  it('restarts after the informer reports an error, and stops retrying after stop()', async () => {
    const informer = new ScriptedInformer(['ok', 'fail', 'ok']);
    const watching = await keepWatching(asCache(informer), {
      name: 'test',
      initialBackoffMs: 1,
      maxBackoffMs: 4,
    });
    informer.emit('error', new Error('watch closed'));
    for (let i = 0; i < 100 && informer.starts < 3; i++) await sleep(5);
    expect(informer.starts).toBe(3);

    await watching.stop();
    informer.emit('error', new Error('late error'));
    await sleep(20);
    expect(informer.starts).toBe(3);
    expect(informer.stops).toBe(1);
  });

  it('logs nothing for the error its own stop() causes', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const informer = new ScriptedInformer(['ok']);
    const watching = await keepWatching(asCache(informer), { name: 'test', logger });
    informer.emit('error', new Error('watch closed'));
    expect(lines.some((l) => l.includes('restarting'))).toBe(true);
    lines.length = 0;
    await watching.stop();
    informer.emit('error', new Error('The user aborted a request.'));
    expect(lines).toEqual([]);
  });
});
