import { Counter, Histogram, type Registry } from 'prom-client';

export type AdmissionOutcome = 'allowed' | 'denied' | 'bad_request' | 'error';

/** Admission metrics on the webhook's private registry. */
export class AdmissionMetrics {
  private readonly requests: Counter<'endpoint' | 'resource' | 'operation' | 'verdict'>;
  private readonly duration: Histogram<'endpoint' | 'resource'>;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: 'tandem_admission_requests_total',
      help: 'Admission reviews answered, by endpoint (validate, mutate), resource kind, operation and verdict.',
      labelNames: ['endpoint', 'resource', 'operation', 'verdict'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'tandem_admission_duration_seconds',
      help: 'Time from receiving an admission review to answering it.',
      labelNames: ['endpoint', 'resource'],
      // The targets are p99 <= 2 ms inside the webhook: fine buckets below 10 ms.
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5, 2],
      registers: [registry],
    });
  }

  observe(
    endpoint: string,
    resource: string,
    operation: string,
    verdict: AdmissionOutcome,
    seconds: number,
  ): void {
    this.requests.inc({ endpoint, resource, operation, verdict });
    this.duration.observe({ endpoint, resource }, seconds);
  }
}
