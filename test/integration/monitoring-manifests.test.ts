/**
 * What the alerts in manifests/monitoring/prometheus-rules.yaml do, run by the real promtool
 * (`promtool test rules`, built by test/tools/build.sh): each alert fires where
 * docs/operations.md#migrations says it does, after its `for`, with its severity, and stays quiet
 * in the look-alike cases it must not page for. That the rules parse and name only exported metrics
 * is metrics-lint.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dumpYaml, type KubernetesObject } from '@kubernetes/client-node';
import { toolPath } from '../../lab/tools.js';
import { readManifests } from '../../lib/kube/manifests.js';
import { manifestsDir } from '../../lib/paths.js';

// Samples one minute apart; series carry the labels a scrape of the migrator gives them.
const m = 'component="migrator"';
const buckets = (result: string, counts: Record<string, string>) =>
  Object.entries(counts).map(([le, values]) => ({
    series: `tandem_migration_dual_engine_seconds_bucket{${m},result="${result}",le="${le}"}`,
    values,
  }));
const leader = (pod: string, values: string) => ({
  series: `tandem_migrator_leader{${m},pod="${pod}"}`,
  values,
});
const quiet = (alertname: string, eval_time: string) => ({ eval_time, alertname, exp_alerts: [] });
const fires = (alertname: string, eval_time: string, severity: string) => ({
  eval_time,
  alertname,
  exp_alerts: [{ exp_labels: { severity } }],
});
const healthyLeader = [leader('migrator-0', '1x40'), leader('migrator-1', '0x40')];

const scenarios = [
  {
    name: 'a migration active for 15 minutes; the follower reports 0',
    interval: '1m',
    input_series: [
      ...healthyLeader,
      { series: `tandem_migrations_active{${m},pod="migrator-0"}`, values: '1x20' },
      { series: `tandem_migrations_active{${m},pod="migrator-1"}`, values: '0x20' },
    ],
    alert_rule_test: [
      quiet('TandemMigrationRunningTooLong', '10m'),
      fires('TandemMigrationRunningTooLong', '16m', 'warning'),
      quiet('TandemMigratorNoLeader', '16m'),
    ],
  },
  {
    name: 'a migration that ends after 12 minutes does not fire',
    interval: '1m',
    input_series: [
      ...healthyLeader,
      { series: `tandem_migrations_active{${m},pod="migrator-0"}`, values: '1x12 0x8' },
    ],
    alert_rule_test: [quiet('TandemMigrationRunningTooLong', '16m')],
  },
  {
    name: 'one dual-engine window of 400 s ends at minute 5, then nothing for 10 minutes',
    interval: '1m',
    input_series: [
      ...healthyLeader,
      ...buckets('confirmed', { '300': '0x30', '600': '0x4 1x25', '+Inf': '0x4 1x25' }),
    ],
    alert_rule_test: [
      quiet('TandemDualEngineTooLong', '3m'),
      fires('TandemDualEngineTooLong', '7m', 'warning'),
      quiet('TandemDualEngineTooLong', '20m'),
    ],
  },
  {
    name: 'dual-engine windows of under 300 s do not fire',
    interval: '1m',
    input_series: [
      ...healthyLeader,
      ...buckets('confirmed', { '300': '0+1x30', '600': '0+1x30', '+Inf': '0+1x30' }),
    ],
    alert_rule_test: [quiet('TandemDualEngineTooLong', '10m')],
  },
  {
    name: 'half of the migrations roll back, one per minute',
    interval: '1m',
    input_series: [
      ...healthyLeader,
      {
        series: `tandem_migrations_total{${m},result="rolled_back",reason="MigrationFailed"}`,
        values: '0+1x40',
      },
      {
        series: `tandem_migrations_total{${m},result="confirmed",reason="MigrationSucceeded"}`,
        values: '0+1x40',
      },
    ],
    alert_rule_test: [fires('TandemMigrationsRollingBack', '15m', 'warning')],
  },
  {
    name: 'two rollbacks alone on a quiet cluster do not page',
    interval: '1m',
    input_series: [
      ...healthyLeader,
      {
        series: `tandem_migrations_total{${m},result="rolled_back",reason="TargetNodeLost"}`,
        values: '0 1 2x38',
      },
    ],
    alert_rule_test: [quiet('TandemMigrationsRollingBack', '15m')],
  },
  {
    name: 'migrators scraped, none leading',
    interval: '1m',
    input_series: [leader('migrator-0', '0x10'), leader('migrator-1', '0x10')],
    alert_rule_test: [
      quiet('TandemMigratorNoLeader', '3m'),
      fires('TandemMigratorNoLeader', '6m', 'critical'),
    ],
  },
  {
    name: 'no migrator scraped at all',
    interval: '1m',
    input_series: [{ series: 'tandem_engine_epoch{component="engine",volume="pvc-1"}', values: '7x10' }],
    alert_rule_test: [fires('TandemMigratorNoLeader', '6m', 'critical')],
  },
];

describe('the migration alerts under promtool test rules', () => {
  let dir: string;

  beforeAll(async () => {
    const objects = await readManifests(join(manifestsDir(), 'monitoring'));
    const rule = objects.find((o) => o.kind === 'PrometheusRule') as
      | (KubernetesObject & { spec: { groups: { rules: Record<string, unknown>[] }[] } })
      | undefined;
    if (!rule) throw new Error('manifests/monitoring/ has no PrometheusRule');
    // promtool compares annotations verbatim, rendered templates included; these scenarios check
    // expressions, durations and labels, and `promtool check rules` (metrics-lint) the templates.
    const groups = rule.spec.groups.map((g) => ({
      ...g,
      rules: g.rules.map(({ annotations: _, ...r }) => r),
    }));
    dir = mkdtempSync(join(tmpdir(), 'tandem-alerts-'));
    writeFileSync(join(dir, 'rules.yaml'), dumpYaml({ groups }));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('covers every alert of the PrometheusRule', () => {
    const tested = new Set(scenarios.flatMap((s) => s.alert_rule_test.map((t) => t.alertname)));
    expect([...tested].sort()).toEqual([
      'TandemDualEngineTooLong',
      'TandemMigrationRunningTooLong',
      'TandemMigrationsRollingBack',
      'TandemMigratorNoLeader',
    ]);
  });

  it.each(scenarios.map((s) => [s.name, s] as const))('%s', (_name, scenario) => {
    const file = join(dir, 'scenario.test.yaml');
    writeFileSync(
      file,
      dumpYaml({ rule_files: ['rules.yaml'], evaluation_interval: '1m', tests: [scenario] }),
    );
    const run = spawnSync(toolPath('promtool'), ['test', 'rules', file], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (run.error) throw run.error;
    // promtool's own report says which alert differed, at which time, and what it got instead.
    if (run.status !== 0)
      throw new Error(`promtool test rules exited ${run.status}:\n${run.stdout}${run.stderr}`);
    expect(run.stdout).toContain('SUCCESS');
  });
});
