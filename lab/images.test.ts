import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../lib/paths.js';
import { imagesBuildScript, parseImportedRefs, parseLabImages } from './images.js';

const root = packageRoot();
const script = readFileSync(imagesBuildScript(), 'utf8');

/** The base images the Dockerfile pulls: FROM lines that do not name an earlier stage. */
function dockerfileBases(text: string): string[] {
  const stages = new Set<string>();
  const bases: string[] = [];
  for (const line of text.split('\n')) {
    const match = /^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$/i.exec(line.trim());
    if (!match?.[1]) continue;
    if (!stages.has(match[1])) bases.push(match[1]);
    if (match[2]) stages.add(match[2]);
  }
  return bases;
}

/** A shell variable assignment of build.sh, e.g. node_ref=localhost/node:22-bookworm-slim. */
function scriptVariable(name: string): string {
  const value = new RegExp(`^${name}=(\\S+)$`, 'm').exec(script)?.[1];
  if (!value) throw new Error(`build.sh assigns no ${name}`);
  return value;
}

describe('lab/images/build.sh and the Dockerfile', () => {
  test("the Dockerfile's bases are exactly the stand-ins build.sh makes", () => {
    const bases = dockerfileBases(readFileSync(join(root, 'Dockerfile'), 'utf8'));
    expect(bases.length).toBeGreaterThan(0);
    // build.sh's registries.conf resolves short names in localhost only.
    expect(script).toContain('unqualified-search-registries = ["localhost"]');
    const resolved = new Set(bases.map((base) => (base.includes('/') ? base : `localhost/${base}`)));
    expect([...resolved].sort()).toEqual([scriptVariable('golang_ref'), scriptVariable('node_ref')].sort());
  });

  test("every sidecar build.sh makes has exactly one image in the controller's manifest", () => {
    const controller = readFileSync(join(root, 'manifests', 'driver', 'controller.yaml'), 'utf8');
    const list = /^sidecars=\(([^)]*)\)$/m.exec(script)?.[1]?.trim().split(/\s+/) ?? [];
    expect(list).toEqual(['csi-provisioner', 'csi-attacher', 'csi-resizer']);
    for (const name of list) {
      const refs = controller.match(new RegExp(`^\\s*image:\\s*\\S*/${name}:\\S+\\s*$`, 'gm')) ?? [];
      expect({ name, count: refs.length }).toEqual({ name, count: 1 });
    }
  });

  test('buildah runs with its own storage and chroot isolation, never pulling', () => {
    expect(script).toMatch(
      /buildah --root "\$store\/root" --runroot "\$store\/runroot" --storage-driver vfs/,
    );
    expect(script).toContain('build --isolation chroot --pull=never');
  });
});

describe('parseLabImages', () => {
  const valid = {
    tandem: { ref: 'localhost/tandem:0123456789abcdef', archive: '/cache/tandem-0123456789abcdef.tar' },
    launcher: {
      ref: 'localhost/tandem-launcher:0123456789abcdef',
      archive: '/cache/launcher-0123456789abcdef.tar',
    },
    pause: { ref: 'localhost/tandem-pause:1', archive: '/cache/pause-1.tar' },
    sidecars: [{ ref: 'example.test/sig-storage/csi-attacher:v4.13.0', archive: '/cache/sidecar-a.tar' }],
  };
  const parse = (value: unknown) => parseLabImages(JSON.stringify(value), 'images.json');

  test('accepts what build.sh writes', () => {
    expect(parse(valid)).toEqual(valid);
  });

  test.each([
    ['not JSON', '{', /images\.json: not JSON/],
    ['an array', '[]', /expected an object with tandem, launcher, pause and sidecars/],
  ])('refuses %s', (_what, text, message) => {
    expect(() => parseLabImages(text, 'images.json')).toThrow(message);
  });

  test('names the field that is wrong', () => {
    expect(() => parse({ ...valid, tandem: undefined })).toThrow(
      'images.json: tandem must be an object with ref and archive',
    );
    expect(() => parse({ ...valid, pause: { ...valid.pause, ref: 'tandem-pause' } })).toThrow(
      'images.json: pause.ref must be a fully qualified image reference with a tag, got "tandem-pause"',
    );
    expect(() => parse({ ...valid, pause: { ...valid.pause, ref: 'localhost/Tandem:1' } })).toThrow(
      /pause\.ref/,
    );
    expect(() => parse({ ...valid, tandem: { ...valid.tandem, archive: 'tandem.tar' } })).toThrow(
      'images.json: tandem.archive must be an absolute path to a .tar file, got "tandem.tar"',
    );
    expect(() => parse({ ...valid, sidecars: {} })).toThrow('images.json: sidecars must be an array');
    expect(() => parse({ ...valid, sidecars: [valid.pause, { ref: valid.pause.ref }] })).toThrow(
      'images.json: sidecars[1].archive must be an absolute path to a .tar file, got nothing',
    );
  });
});

describe('parseImportedRefs', () => {
  test("reads the names from ctr 1.6's unpack lines", () => {
    const digest = `sha256:${'ab'.repeat(32)}`;
    const stdout = [
      `unpacking localhost/tandem:0123456789abcdef (${digest})...done`,
      `unpacking localhost/tandem-pause:1 (${digest})...done`,
      `unpacking localhost/tandem-pause:1 (${digest})...done`,
      '',
    ].join('\n');
    expect(parseImportedRefs(stdout)).toEqual([
      'localhost/tandem:0123456789abcdef',
      'localhost/tandem-pause:1',
    ]);
    expect(parseImportedRefs('')).toEqual([]);
  });
});
