import { request } from './fake-cluster-view.js';
import { validateVolume } from './volume.js';

const spec = (extra: object = {}) => ({
  sizeBytes: 1 << 30,
  numberOfReplicas: 3,
  accessMode: 'ReadWriteMany',
  volumeMode: 'Block',
  migratable: true,
  ...extra,
});
const volume = (specExtra: object = {}, status?: object) => ({
  metadata: { name: 'pvc-1' },
  spec: spec(specExtra),
  ...(status ? { status } : {}),
});
const check = (object: unknown, oldObject?: unknown) =>
  validateVolume(
    request('Volume', object, {
      group: 'tandem.dev',
      namespace: null,
      ...(oldObject ? { operation: 'UPDATE', oldObject } : {}),
    }),
  );

describe('Volume rule', () => {
  it.each([
    ['one engine', volume({ engines: [{ node: 'a' }] })],
    ['two engines on a migratable volume', volume({ engines: [{ node: 'a' }, { node: 'b' }] })],
    [
      'a migration between the engine nodes',
      volume({ engines: [{ node: 'a' }, { node: 'b' }] }, { migration: { source: 'a', target: 'b' } }),
    ],
  ])('admits %s', (_what, object) => {
    expect(check(object)).toEqual({ allowed: true });
  });

  it.each([
    [
      'three engines',
      volume({ engines: [{ node: 'a' }, { node: 'b' }, { node: 'c' }] }),
      /at most two engines/,
    ],
    ['two engines on one node', volume({ engines: [{ node: 'a' }, { node: 'a' }] }), /different node/],
    [
      'two engines, not migratable',
      volume({ migratable: false, engines: [{ node: 'a' }, { node: 'b' }] }),
      /only on a migratable volume/,
    ],
    ['six replicas', volume({ numberOfReplicas: 6 }), /1 to 5/],
    [
      'a migration to a node without engine',
      volume({ engines: [{ node: 'a' }, { node: 'b' }] }, { migration: { source: 'a', target: 'c' } }),
      /c has no engine/,
    ],
  ])('refuses %s', (_what, object, message) => {
    const verdict = check(object);
    expect(verdict).toMatchObject({ allowed: false, code: 422 });
    if (!verdict.allowed) expect(verdict.message).toMatch(message);
  });

  it('refuses changing the target of a running migration', () => {
    const engines = { engines: [{ node: 'a' }, { node: 'b' }] };
    const before = volume(engines, { migration: { source: 'a', target: 'b' } });
    const after = volume(
      { engines: [{ node: 'a' }, { node: 'c' }] },
      { migration: { source: 'a', target: 'c' } },
    );
    const verdict = check(after, before);
    if (!verdict.allowed)
      expect(verdict.message).toMatch(/migration a -> b is running; its nodes cannot change/);
    else throw new Error('admitted');
  });

  it('allows ending a migration', () => {
    const before = volume(
      { engines: [{ node: 'a' }, { node: 'b' }] },
      { migration: { source: 'a', target: 'b' } },
    );
    expect(check(volume({ engines: [{ node: 'b' }] }, {}), before).allowed).toBe(true);
  });

  it('says the CRD caps the engines too', () => {
    const verdict = check(volume({ engines: [{ node: 'a' }, { node: 'b' }, { node: 'c' }] }));
    if (verdict.allowed) throw new Error('admitted');
    expect(verdict.message).toMatch(/the CRD caps spec\.engines at 2/);
  });

  describe('during a migration', () => {
    const engines = { engines: [{ node: 'a' }, { node: 'b' }] };
    const running = { migration: { source: 'a', target: 'b' } };
    const before = volume(engines, running);

    it.each([
      ['numberOfReplicas', { numberOfReplicas: 2 }, /numberOfReplicas cannot change from 3 to 2/],
      ['sizeBytes', { sizeBytes: 2 * 2 ** 30 }, /sizeBytes cannot change from 1073741824 to 2147483648/],
    ])('refuses a change of %s', (_what, change, message) => {
      const verdict = check(volume({ ...engines, ...change }, running), before);
      expect(verdict).toMatchObject({ allowed: false, code: 422 });
      if (verdict.allowed) return;
      expect(verdict.message).toMatch(message);
      expect(verdict.message).toMatch(/migration a -> b is running; retry after it ends/);
    });

    it('refuses the change even in the update that ends the migration', () => {
      const verdict = check(volume({ engines: [{ node: 'b' }], numberOfReplicas: 2 }, {}), before);
      expect(verdict).toMatchObject({ allowed: false, code: 422 });
    });

    it('admits other spec changes', () => {
      expect(check(volume({ ...engines, staleReplicaTimeoutSeconds: 60 }, running), before)).toEqual({
        allowed: true,
      });
    });

    it('admits replica and size changes once no migration runs', () => {
      const idle = volume({ engines: [{ node: 'b' }] }, { lastMigration: { source: 'a', target: 'b' } });
      const after = volume({ engines: [{ node: 'b' }], numberOfReplicas: 2, sizeBytes: 2 * 2 ** 30 });
      expect(check(after, idle)).toEqual({ allowed: true });
    });
  });
});
