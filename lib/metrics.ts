import { collectDefaultMetrics, Registry } from 'prom-client';

export const METRIC_PREFIX = 'tandem_';

/**
 * Each component owns a private registry (never prom-client's global one), so
 * two components in one process — as in tests and the lab — never collide on
 * metric names, and tests can read exactly one component's series.
 */
export function createRegistry(component: string, withProcessMetrics = true): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  if (withProcessMetrics) collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  return registry;
}
