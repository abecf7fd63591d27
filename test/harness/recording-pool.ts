import type { EngineRunner } from '../../driver/dataplane/reconciler.js';
import type { EngineSpec } from '../../driver/engine/engine-pool.js';

/**
 * An engine pool for reconciler tests: records start/stop calls and keeps "running" engines, as
 * the real pool would across reconciler instances sharing it.
 */
export class RecordingPool implements EngineRunner {
  readonly running = new Map<string, EngineSpec>();
  readonly calls: string[] = [];

  async start(spec: EngineSpec) {
    this.calls.push(`start ${spec.volume} ${spec.join ? 'join' : 'takeover'}`);
    this.running.set(spec.volume, spec);
    return {};
  }

  async stop(volume: string) {
    this.calls.push(`stop ${volume}`);
    return { stopped: this.running.delete(volume) };
  }

  async list() {
    return [...this.running.keys()].map((volume) => ({ volume }));
  }
}
