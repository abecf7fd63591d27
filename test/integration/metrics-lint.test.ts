/**
 * The components' metrics and the monitoring manifests, checked with the real promtool (built from
 * its Go module by test/tools/build.sh):
 * - every component's private registry, with a series in each of its metrics, passes
 *   `promtool check metrics` (Prometheus' naming and type lint) without a remark on Tandem's own
 *   metrics;
 * - the PrometheusRule's groups pass `promtool check rules` with every lint (what the alerts do is
 *   monitoring-manifests.test.ts);
 * - every PromQL expression in the Grafana dashboard and in the rules names only series the
 *   registries export, so a renamed metric breaks this test rather than a dashboard in production.
 * Needs no cluster: the registries are built in-process as the components build them.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dumpYaml, type KubernetesObject } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { ShareControllerMetrics } from '../../driver/controller/share-metrics.js';
import { EngineMetrics } from '../../driver/engine/metrics.js';
import { ReplicaServerMetrics } from '../../driver/replica/metrics.js';
import { ShareManagerMetrics } from '../../driver/share-manager/metrics.js';
import { toolPath } from '../../lab/tools.js';
import { readManifests } from '../../lib/kube/manifests.js';
import { createRegistry } from '../../lib/metrics.js';
import { manifestsDir, packageRoot } from '../../lib/paths.js';
import { MigratorMetrics, resultOf } from '../../migrator/metrics.js';
import { AdmissionMetrics } from '../../webhook/metrics.js';

/** The migrator's series as `migrator/execute.ts` and the reconciler write them. */
function migratorRegistry(): Registry {
  const m = new MigratorMetrics();
  const ended = [
    ['Confirm', 'MigrationSucceeded', 14, 3.2, 0.08],
    ['Rollback', 'MigrationFailed', 41, 30.5, 0.3],
    ['Detach', 'BothPodsGone', 95, 80, 1.5],
  ] as const;
  for (const [decision, reason, duration, dual, latency] of ended) {
    const result = resultOf(decision);
    m.migrations.inc({ result, reason });
    m.duration.observe({ result }, duration);
    m.dualEngine.observe({ result }, dual);
    m.decisionLatency.observe({ result }, latency);
  }
  m.active.set(1);
  m.leader.set(1);
  m.reconcileErrors.inc();
  return m.registry;
}

/** `tandem dataplane`: the replica server's registry merged with the engines' (cli/commands/dataplane.ts). */
function dataplaneRegistry(): Registry {
  const server = new ReplicaServerMetrics();
  server.requests.inc({ volume: 'pvc-1', op: 'WRITE', status: 'OK' });
  server.requests.inc({ volume: 'pvc-1', op: 'READ', status: 'STALE_EPOCH' });
  server.bytes.inc({ volume: 'pvc-1', op: 'WRITE' }, 65536);
  server.latency.observe({ op: 'WRITE' }, 0.0004);
  server.sessions.inc({ volume: 'pvc-1' });
  server.refusedHellos.inc({ reason: 'stale-epoch' });
  server.fatalFrames.inc({ reason: 'bad-magic' });

  const engine = new EngineMetrics(createRegistry('engine', false));
  engine.observeRequest('pvc-1', 'write', 65536, 0.0012, true);
  engine.observeRequest('pvc-1', 'read', 4096, 0.0003, true);
  engine.observeRequest('pvc-1', 'flush', 0, 0.004, false);
  engine.observeMembership('pvc-1', {
    epoch: 7,
    sizeBytes: 1 << 30,
    replicas: [
      { node: 'node-1', address: '10.0.0.1:9500', mode: 'ReadWrite' },
      { node: 'node-2', address: '10.0.0.2:9500', mode: 'WriteOnly', rebuildProgress: 0.4 },
    ],
    engines: [{ node: 'node-1', id: 'node-1/4242/a1' }],
  });
  engine.rebuildProgress.set({ volume: 'pvc-1', replica: 'node-2' }, 0.4);
  engine.rebuilds.inc({ volume: 'pvc-1', outcome: 'done' });
  engine.rebuildBytes.inc({ volume: 'pvc-1' }, 1 << 20);
  engine.scrubDivergentBlocks.set({ volume: 'pvc-1' }, 0);
  engine.scrubs.inc({ volume: 'pvc-1', result: 'clean' });
  return Registry.merge([server.registry, engine.registry]);
}

/** `tandem webhook` (webhook/run.ts): the process metrics plus admission reviews. */
function webhookRegistry(): Registry {
  const registry = createRegistry('webhook');
  const admission = new AdmissionMetrics(registry);
  admission.observe('validate', 'PersistentVolumeClaim', 'CREATE', 'allowed', 0.0006);
  admission.observe('validate', 'StorageClass', 'CREATE', 'denied', 0.0011);
  admission.observe('mutate', 'VirtualMachine', 'UPDATE', 'allowed', 0.0009);
  return registry;
}

/** `tandem share-manager` serving (its clients gauge reads this machine's TCP table; 0 is a series too; Ganesha's counts given). */
function shareManagerRegistry(): Registry {
  const m = new ShareManagerMetrics(
    'pvc-1',
    () => ({ address: '127.0.0.1', port: 2049 }),
    async () => ({ NFSv41: 120, NFSv42: 3 }),
  );
  m.up.set({ volume: 'pvc-1' }, 1);
  m.gracePeriods.inc({ volume: 'pvc-1' });
  return m.registry;
}

/** The controller: process metrics and the share-manager replacements it decides. */
function controllerRegistry(): Registry {
  const registry = createRegistry('controller');
  new ShareControllerMetrics(registry).failovers.inc({ cause: 'node_lost' });
  return registry;
}

/** Each component's /metrics body. The node plugin registers process metrics only. */
async function expositions(): Promise<Record<string, string>> {
  const registries: Record<string, Registry> = {
    migrator: migratorRegistry(),
    dataplane: dataplaneRegistry(),
    webhook: webhookRegistry(),
    'share-manager': shareManagerRegistry(),
    controller: controllerRegistry(),
    node: createRegistry('node'),
  };
  const out: Record<string, string> = {};
  for (const [name, registry] of Object.entries(registries)) out[name] = await registry.metrics();
  return out;
}

function promtool(args: string[], input?: string) {
  const run = spawnSync(toolPath('promtool'), args, { input, encoding: 'utf8', timeout: 30_000 });
  if (run.error) throw run.error;
  return { code: run.status, stdout: run.stdout.trim(), stderr: run.stderr.trim() };
}

/**
 * prom-client's default process metrics (collectDefaultMetrics in lib/metrics.ts) include three
 * gauges named `*_total`, which promtool rightly flags; every other name it chooses passes. They
 * can only be fixed in lib/metrics.ts (drop them and register them again without the suffix).
 * Until then exactly these remarks are expected where those gauges are exported, and any other
 * remark fails; once they are gone the expectation is an empty lint and exit code 0.
 */
const PROM_CLIENT_TOTAL_GAUGES = ['active_handles_total', 'active_requests_total', 'active_resources_total'];

function promClientRemarks(exposition: string): string[] {
  return PROM_CLIENT_TOTAL_GAUGES.map((n) => `tandem_nodejs_${n}`)
    .filter((n) => exposition.includes(`# TYPE ${n} gauge\n`))
    .map((n) => `${n} non-counter metrics should not have "_total" suffix`)
    .sort();
}

/** Names of the samples in an exposition (histograms as their _bucket, _sum and _count series). */
function seriesNames(text: string): Set<string> {
  return new Set([...text.matchAll(/^([a-zA-Z_:][\w:]*)[{ ]/gm)].map((m) => m[1] as string));
}

const PROMQL_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
for (const k of ['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']) PROMQL_KEYWORDS.add(k);

/**
 * The metric names a PromQL expression selects: identifiers left after removing strings, label
 * matchers, ranges and grouping clauses (so `sum by (le) (…)` reads as a call) that are neither
 * keywords nor called as functions. A regex,
 * not a parser: enough for the expressions we write, and strict — a typo shows up as a name.
 */
function metricNamesIn(expr: string): string[] {
  const labelValues = /^\s*label_values\(\s*([a-zA-Z_:][\w:]*)/.exec(expr);
  if (labelValues) return [labelValues[1] as string];
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const names: string[] = [];
  for (const m of stripped.matchAll(/(?<![\w:.$])[a-zA-Z_:][\w:]*/g)) {
    const calledAsFunction = stripped
      .slice((m.index ?? 0) + m[0].length)
      .trimStart()
      .startsWith('(');
    if (!calledAsFunction && !PROMQL_KEYWORDS.has(m[0].toLowerCase())) names.push(m[0]);
  }
  return names;
}

interface RuleGroup {
  name: string;
  rules: { alert?: string; record?: string; expr: string; annotations?: Record<string, string> }[];
}

function ruleGroups(objects: KubernetesObject[]): RuleGroup[] {
  const rule = objects.find((o) => o.kind === 'PrometheusRule') as
    | (KubernetesObject & { spec: { groups: RuleGroup[] } })
    | undefined;
  if (!rule) throw new Error('manifests/monitoring/ has no PrometheusRule');
  expect(rule.apiVersion).toBe('monitoring.coreos.com/v1');
  expect(rule.metadata).toMatchObject({ name: 'tandem', namespace: 'tandem-system' });
  return rule.spec.groups;
}

function dashboardOf(objects: KubernetesObject[]): { json: unknown; exprs: string[] } {
  const map = objects.find((o) => o.kind === 'ConfigMap' && o.metadata?.labels?.grafana_dashboard === '1') as
    | (KubernetesObject & { data: Record<string, string> })
    | undefined;
  if (!map) throw new Error('manifests/monitoring/ has no ConfigMap labelled grafana_dashboard: "1"');
  expect(map.metadata?.namespace).toBe('tandem-system');
  const [file, text] = Object.entries(map.data)[0] ?? [];
  expect(file).toMatch(/\.json$/);
  const json: unknown = JSON.parse(text ?? '');
  // Every query of a panel ("expr") and of a template variable ("query": {"query": …}).
  const exprs: string[] = [];
  const walk = (v: unknown, key = ''): void => {
    if (typeof v === 'string' && (key === 'expr' || key === 'query' || key === 'definition')) exprs.push(v);
    else if (Array.isArray(v)) for (const item of v) walk(item);
    else if (v && typeof v === 'object') for (const [k, item] of Object.entries(v)) walk(item, k);
  };
  walk(json);
  return { json, exprs: exprs.filter((e) => e !== 'prometheus') };
}

describe('metrics and monitoring manifests, checked by promtool', () => {
  let text: Record<string, string>;
  let exported: Set<string>;
  let monitoring: KubernetesObject[];
  let dir: string;
  let processMetrics: Set<string>;

  beforeAll(async () => {
    const bare = await createRegistry('bare').metrics();
    processMetrics = new Set([...bare.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string));
    text = await expositions();
    exported = new Set(Object.values(text).flatMap((t) => [...seriesNames(t)]));
    monitoring = await readManifests(join(manifestsDir(), 'monitoring'));
    dir = mkdtempSync(join(tmpdir(), 'tandem-promtool-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['migrator', 'dataplane', 'webhook', 'share-manager', 'controller', 'node'])(
    "%s's exposition passes promtool check metrics, with no remark on Tandem's own metrics",
    (component) => {
      const exposition = text[component] ?? '';
      // Every metric Tandem declares has a sample, so the lint sees real series (labels, buckets),
      // not just HELP and TYPE. The process metrics are exempt: GC durations appear only after a GC.
      const samples = seriesNames(exposition);
      const unpopulated = [...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)]
        .filter(([, name]) => !processMetrics.has(name as string))
        .filter(([, name, type]) => !samples.has(type === 'histogram' ? `${name}_bucket` : (name as string)))
        .map(([, name]) => name);
      expect(unpopulated).toEqual([]);
      const remarks = promClientRemarks(exposition);
      const lint = promtool(['check', 'metrics'], exposition);
      expect({ ...lint, stderr: lint.stderr.split('\n').filter(Boolean).sort() }).toEqual({
        code: remarks.length > 0 ? 3 : 0,
        stdout: '',
        stderr: remarks,
      });
    },
  );

  it('the PrometheusRule passes promtool check rules and names only exported metrics', () => {
    const groups = ruleGroups(monitoring);
    const file = join(dir, 'tandem-rules.yaml');
    writeFileSync(file, dumpYaml({ groups }));
    const check = promtool(['check', 'rules', '--lint=all', '--lint-fatal', file]);
    expect({ code: check.code, stderr: check.stderr }).toEqual({ code: 0, stderr: '' });
    expect(check.stdout).toContain('SUCCESS: 4 rules found');

    const operations = readFileSync(join(packageRoot(), 'docs', 'operations.md'), 'utf8');
    for (const rule of groups.flatMap((g) => g.rules)) {
      const names = metricNamesIn(rule.expr);
      const unknown = names.filter((n) => !exported.has(n));
      expect({ alert: rule.alert, named: names.length > 0, unknown }).toEqual({
        alert: rule.alert,
        named: true,
        unknown: [],
      });
      expect(rule.annotations).toMatchObject({
        summary: expect.any(String),
        description: expect.any(String),
        runbook_url: 'docs/operations.md#migrations',
      });
      expect(operations).toContain(rule.alert);
    }
    expect(operations).toContain('<a id="migrations"></a>');
  });

  it('the dashboard is Grafana JSON whose queries name only exported metrics', () => {
    const { json, exprs } = dashboardOf(monitoring);
    expect(json).toMatchObject({
      uid: expect.any(String),
      title: expect.any(String),
      panels: expect.any(Array),
    });
    const wanted = [
      'tandem_migrations_total',
      'tandem_migration_duration_seconds_bucket',
      'tandem_migration_dual_engine_seconds_bucket',
      'tandem_migration_decision_latency_seconds_bucket',
      'tandem_migrations_active',
      'tandem_migrator_leader',
      'tandem_engine_operations_total',
      'tandem_engine_bytes_total',
      'tandem_engine_operation_duration_seconds_bucket',
    ];
    const used = new Set(exprs.flatMap(metricNamesIn));
    expect(wanted.filter((n) => !used.has(n))).toEqual([]);
    for (const expr of exprs) {
      const names = metricNamesIn(expr);
      const unknown = names.filter((n) => !exported.has(n));
      expect({ expr, named: names.length > 0, unknown }).toEqual({ expr, named: true, unknown: [] });
    }
  });
});
