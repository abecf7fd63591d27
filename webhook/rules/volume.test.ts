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
});
