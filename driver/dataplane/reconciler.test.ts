import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException } from '@kubernetes/client-node';
import { newVolume, type Volume } from '../../lib/api/volume.js';
import { silentLogger } from '../../lib/log.js';
import { RecordingPool } from '../../test/harness/recording-pool.js';
import type { EnginePool, EngineSpec } from '../engine/engine-pool.js';
import { readMetadata } from '../replica/metadata.js';
import { ReplicaStore } from '../replica/store.js';
import { VolumeRegistry } from '../replica/volume-registry.js';
import { credentialFilePath } from './credentials.js';
import type { VolumeWriter } from './finalizers.js';
import {
  DataplaneReconciler,
  desiredState,
  type EngineRunner,
  type ReconcilerOptions,
  type VolumeCache,
} from './reconciler.js';

const NODE = 'node-1';
const FINALIZER = 'tandem.dev/dataplane-node-1';
const MiB = 1 << 20;

/** The apiserver and the informer cache in one: a map of Volumes with resourceVersions. */
class FakeCluster implements VolumeCache {
  readonly objects = new Map<string, Volume>();
  readonly handlers = new Map<string, Set<(v: Volume) => void>>();
  rv = 1;
  conflictsToInject = 0;

  put(volume: Volume): void {
    const event = this.objects.has(volume.metadata.name) ? 'update' : 'add';
    const stored = structuredClone(volume);
    stored.metadata.resourceVersion = String(++this.rv);
    this.objects.set(volume.metadata.name, stored);
    for (const cb of this.handlers.get(event) ?? []) cb(stored);
  }
  remove(name: string): void {
    const v = this.objects.get(name);
    this.objects.delete(name);
    if (v) for (const cb of this.handlers.get('delete') ?? []) cb(v);
  }
  /** Deletion as the apiserver does it: with finalizers, only a deletionTimestamp. */
  delete(name: string): void {
    const v = this.objects.get(name);
    if (!v) return;
    if ((v.metadata.finalizers ?? []).length === 0) this.remove(name);
    else this.put({ ...v, metadata: { ...v.metadata, deletionTimestamp: new Date() } });
  }
  get(name: string): Volume | undefined {
    return this.objects.get(name);
  }
  list(): Volume[] {
    return [...this.objects.values()];
  }
  on(verb: string, cb: (v: Volume) => void): void {
    if (!this.handlers.has(verb)) this.handlers.set(verb, new Set());
    this.handlers.get(verb)?.add(cb);
  }
  off(verb: string, cb: (v: Volume) => void): void {
    this.handlers.get(verb)?.delete(cb);
  }
  readonly writer: VolumeWriter = {
    get: async (name) => structuredClone(this.objects.get(name)),
    setFinalizers: async (name, resourceVersion, finalizers) => {
      const v = this.objects.get(name);
      if (!v) throw new ApiException(404, 'gone', '', {});
      if (this.conflictsToInject > 0 || v.metadata.resourceVersion !== resourceVersion) {
        this.conflictsToInject = Math.max(0, this.conflictsToInject - 1);
        throw new ApiException(409, 'conflict', '', {});
      }
      this.put({ ...v, metadata: { ...v.metadata, finalizers } });
      const after = this.objects.get(name) as Volume;
      if (after.metadata.deletionTimestamp && finalizers.length === 0) this.remove(name);
      return after;
    },
  };
}

const credential = Buffer.alloc(32, 9);

function volume(name: string, opts: { replica?: boolean; engine?: boolean; peer?: boolean; size?: number }) {
  const v = newVolume(name, {
    sizeBytes: opts.size ?? 4 * MiB,
    numberOfReplicas: 2,
    accessMode: 'ReadWriteMany',
    volumeMode: 'Block',
    ...(opts.engine ? { engines: [{ node: NODE }, ...(opts.peer ? [{ node: 'node-2' }] : [])] } : {}),
  });
  v.status = {
    replicas: opts.replica ? [{ node: NODE, mode: 'ReadWrite' }] : [{ node: 'node-3', mode: 'ReadWrite' }],
    ...(opts.peer ? { engines: [{ node: 'node-2', id: 'node-2/1/x' }] } : {}),
  };
  return v;
}

/** A pool whose engines serve a size (the spec's when started) and follow resize() unless waiting. */
class SizedPool extends RecordingPool {
  readonly sizes = new Map<string, number>();
  readonly resizes: string[] = [];
  waiting: string | undefined;

  constructor(private readonly cluster: () => FakeCluster) {
    super();
  }

  override async start(spec: EngineSpec) {
    this.sizes.set(spec.volume, this.cluster().get(spec.volume)?.spec.sizeBytes ?? 0);
    return super.start(spec);
  }

  override async list() {
    return (await super.list()).map((e) => ({ ...e, sizeBytes: this.sizes.get(e.volume) ?? 0 }));
  }

  async resize(volume: string) {
    this.resizes.push(volume);
    const wanted = this.cluster().get(volume)?.spec.sizeBytes ?? 0;
    if (this.waiting === undefined) this.sizes.set(volume, wanted);
    const sizeBytes = this.sizes.get(volume) ?? 0;
    return { sizeBytes, wanted, ...(this.waiting === undefined ? {} : { waiting: this.waiting }) };
  }
}

describe('EngineRunner', () => {
  it('is what EnginePool offers (checked by the compiler)', () => {
    const fits = (pool: EnginePool): EngineRunner => pool;
    expect(typeof fits).toBe('function');
  });
});

describe('desiredState', () => {
  it('wants a replica where status.replicas says, an engine where spec.engines says, join beside a peer', () => {
    expect(desiredState(volume('a', { replica: true }), NODE)).toEqual({
      replica: true,
      engine: false,
      join: false,
    });
    expect(desiredState(volume('a', { engine: true, peer: true }), NODE)).toEqual({
      replica: false,
      engine: true,
      join: true,
    });
    const deleting = volume('a', { replica: true, engine: true });
    deleting.metadata.deletionTimestamp = new Date();
    expect(desiredState(deleting, NODE)).toEqual({ replica: false, engine: false, join: false });
    expect(desiredState(undefined, NODE)).toEqual({ replica: false, engine: false, join: false });
  });
});

describe('DataplaneReconciler', () => {
  let dataDir: string;
  let cluster: FakeCluster;
  let pool: RecordingPool;
  let secrets: Map<string, Buffer>;
  let reconciler: DataplaneReconciler;

  const options = (): ReconcilerOptions => ({
    node: NODE,
    dataDir,
    runDir: '/run/tandem',
    volumes: cluster,
    writer: cluster.writer,
    pool,
    credentials: { read: async (v) => secrets.get(v) },
    resyncIntervalMs: 60_000,
    initialBackoffMs: 10,
    maxBackoffMs: 50,
  });
  const make = () => new DataplaneReconciler(options());

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'tandem-reconciler-test-'));
    cluster = new FakeCluster();
    pool = new RecordingPool();
    secrets = new Map([['vol-a', credential]]);
    reconciler = make();
  });
  afterEach(async () => {
    await reconciler.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates the replica with the finalizer, starts the engine once, tears both down on delete', async () => {
    cluster.put(volume('vol-a', { replica: true, engine: true }));
    await reconciler.start();
    await reconciler.idle();
    const meta = await readMetadata(join(dataDir, 'vol-a'));
    expect(meta.sizeBytes).toBe(4 * MiB);
    expect(readFileSync(join(dataDir, 'vol-a', 'secret'))).toEqual(credential);
    const credFile = credentialFilePath(dataDir, 'vol-a');
    expect(readFileSync(credFile)).toEqual(credential);
    expect(statSync(credFile).mode & 0o777).toBe(0o600);
    expect(cluster.get('vol-a')?.metadata.finalizers).toEqual([FINALIZER]);
    expect(pool.calls).toEqual(['start vol-a takeover']);
    expect(pool.running.get('vol-a')).toMatchObject({
      nbdSocket: '/run/tandem/vol-a.sock',
      credentialFile: credFile,
    });

    await reconciler.resync();
    await reconciler.idle();
    expect(pool.calls).toEqual(['start vol-a takeover']);

    cluster.delete('vol-a');
    await reconciler.idle();
    expect(pool.calls).toEqual(['start vol-a takeover', 'stop vol-a']);
    expect(existsSync(join(dataDir, 'vol-a'))).toBe(false);
    expect(existsSync(credFile)).toBe(false);
    expect(cluster.get('vol-a')).toBeUndefined();
  });

  it('keeps other finalizers and survives write conflicts', async () => {
    const v = volume('vol-a', { replica: true });
    v.metadata.finalizers = ['other.example/keep'];
    cluster.put(v);
    cluster.conflictsToInject = 2;
    await reconciler.reconcile('vol-a');
    expect(cluster.get('vol-a')?.metadata.finalizers).toEqual(['other.example/keep', FINALIZER]);
    cluster.put(volume('vol-a', { replica: false, engine: false }));
    // The put above replaced metadata: put the finalizers back as the apiserver would have kept them.
    const current = cluster.get('vol-a') as Volume;
    cluster.put({
      ...current,
      metadata: { ...current.metadata, finalizers: ['other.example/keep', FINALIZER] },
    });
    await reconciler.reconcile('vol-a');
    expect(existsSync(join(dataDir, 'vol-a'))).toBe(false);
    expect(cluster.get('vol-a')?.metadata.finalizers).toEqual(['other.example/keep']);
  });

  it('joins when another wanted engine is already a member', async () => {
    cluster.put(volume('vol-a', { engine: true, peer: true }));
    await reconciler.reconcile('vol-a');
    expect(pool.calls).toEqual(['start vol-a join']);
    expect(existsSync(join(dataDir, 'vol-a'))).toBe(false); // no replica on this node
  });

  it('retries a volume whose Secret is missing until it appears', async () => {
    secrets.clear();
    cluster.put(volume('vol-a', { replica: true }));
    await reconciler.start();
    await reconciler.idle();
    expect(reconciler.failures('vol-a')).toBeGreaterThan(0);
    expect(existsSync(join(dataDir, 'vol-a'))).toBe(false);
    secrets.set('vol-a', credential);
    const deadline = Date.now() + 2000;
    while (!existsSync(join(dataDir, 'vol-a', 'meta.json')) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    await reconciler.idle();
    expect(reconciler.failures('vol-a')).toBe(0);
  });

  it('grows a smaller replica on disk, refuses to shrink one and refuses a different credential', async () => {
    const store = await ReplicaStore.create(dataDir, {
      volume: 'vol-a',
      sizeBytes: 2 * MiB,
      secret: credential,
    });
    await store.close();
    cluster.put(volume('vol-a', { replica: true, size: 4 * MiB }));
    await reconciler.reconcile('vol-a');
    expect((await readMetadata(join(dataDir, 'vol-a'))).sizeBytes).toBe(4 * MiB);
    expect(statSync(join(dataDir, 'vol-a', 'data')).size).toBe(4 * MiB);
    await reconciler.reconcile('vol-a'); // nothing more to do
    expect((await readMetadata(join(dataDir, 'vol-a'))).sizeBytes).toBe(4 * MiB);
    cluster.put(volume('vol-a', { replica: true, size: 2 * MiB }));
    await expect(reconciler.reconcile('vol-a')).rejects.toThrow(/volumes never shrink/);
    expect((await readMetadata(join(dataDir, 'vol-a'))).sizeBytes).toBe(4 * MiB);
    cluster.put(volume('vol-a', { replica: true, size: 4 * MiB }));
    secrets.set('vol-a', Buffer.alloc(32, 1));
    await expect(reconciler.reconcile('vol-a')).rejects.toThrow(/holds a different credential/);
  });

  it('grows a replica the replica server has open through its registry: sessions see the size at once', async () => {
    await (
      await ReplicaStore.create(dataDir, { volume: 'vol-a', sizeBytes: 2 * MiB, secret: credential })
    ).close();
    const registry = new VolumeRegistry(dataDir, silentLogger());
    const session = await registry.acquire('vol-a');
    await reconciler.stop();
    reconciler = new DataplaneReconciler({ ...options(), replicas: registry });
    cluster.put(volume('vol-a', { replica: true, size: 4 * MiB }));
    await reconciler.reconcile('vol-a');
    expect(session.store.sizeBytes).toBe(4 * MiB);
    await session.store.write(4 * MiB - 4096, Buffer.alloc(4096, 1));
    expect((await readMetadata(join(dataDir, 'vol-a'))).sizeBytes).toBe(4 * MiB);
    await registry.release('vol-a', session);
    await registry.closeAll();
  });

  it('asks a running engine serving less than spec.sizeBytes to resize, retrying while it waits', async () => {
    const sized = new SizedPool(() => cluster);
    pool = sized;
    await reconciler.stop();
    reconciler = make();
    cluster.put(volume('vol-a', { replica: true, engine: true, size: 2 * MiB }));
    await reconciler.reconcile('vol-a');
    expect(sized.resizes).toEqual([]);

    cluster.put(volume('vol-a', { replica: true, engine: true, size: 4 * MiB }));
    sized.waiting = 'replica(s) on node-2 do not hold 4194304 bytes yet';
    await expect(reconciler.reconcile('vol-a')).rejects.toThrow(
      /expansion to 4194304 bytes pending: .*node-2/,
    );
    // The local replica was grown before the engine was asked.
    expect((await readMetadata(join(dataDir, 'vol-a'))).sizeBytes).toBe(4 * MiB);
    sized.waiting = undefined;
    await reconciler.reconcile('vol-a');
    expect(sized.resizes).toEqual(['vol-a', 'vol-a']);
    expect(sized.sizes.get('vol-a')).toBe(4 * MiB);
    await reconciler.reconcile('vol-a');
    expect(sized.resizes).toHaveLength(2); // serving the spec's size: not asked again
  });

  it('a new instance converges from disk and API: removes leftovers of a vanished Volume', async () => {
    cluster.put(volume('vol-a', { replica: true, engine: true }));
    await reconciler.start();
    await reconciler.idle();
    await reconciler.stop();
    // The Volume vanishes while no reconciler runs (finalizer force-removed by hand).
    cluster.objects.delete('vol-a');
    reconciler = make();
    await reconciler.start();
    await reconciler.idle();
    expect(pool.calls).toEqual(['start vol-a takeover', 'stop vol-a']);
    expect(existsSync(join(dataDir, 'vol-a'))).toBe(false);
    expect(existsSync(credentialFilePath(dataDir, 'vol-a'))).toBe(false);
  });
});
