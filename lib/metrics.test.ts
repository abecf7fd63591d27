import { Counter } from 'prom-client';
import { createRegistry } from './metrics.js';

describe('createRegistry', () => {
  it('gives each component its own registry with a component label', async () => {
    const a = createRegistry('webhook', false);
    const b = createRegistry('migrator', false);
    new Counter({ name: 'tandem_test_total', help: 'test', registers: [a] }).inc(2);
    new Counter({ name: 'tandem_test_total', help: 'test', registers: [b] }).inc(5);
    expect(await a.metrics()).toContain('tandem_test_total{component="webhook"} 2');
    expect(await b.metrics()).toContain('tandem_test_total{component="migrator"} 5');
  });

  it('prefixes process metrics with tandem_', async () => {
    const text = await createRegistry('controller').metrics();
    expect(text).toMatch(/^tandem_process_cpu_user_seconds_total/m);
  });
});
