import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureImages, type ImageArchive, type LabImages } from '../../lab/images.js';
import { run } from '../../lib/exec.js';
import { packageRoot } from '../../lib/paths.js';

// A cold build (Debian rootfs, the Dockerfile's apt-get and npm ci, a ~200 MB archive) takes
// minutes on a busy 2-core machine; once cached, seconds. (Per test: under ESM there is no
// `jest` global for jest.setTimeout.)
const BUILD_TIMEOUT_MS = 20 * 60_000;
// Reading the archives: listing the Tandem image's layers takes seconds.
const CHECK_TIMEOUT_MS = 5 * 60_000;

interface Descriptor {
  digest: string;
  annotations?: Record<string, string>;
}
interface ImageConfig {
  config?: { Entrypoint?: string[]; User?: string };
  rootfs?: { diff_ids?: string[] };
}

/** A member of an OCI archive, read with tar (the archive is a plain tar of an OCI layout). */
async function member(archive: string, path: string): Promise<string> {
  return (await run('tar', ['-xOf', archive, path], { timeoutMs: 60_000 })).stdout;
}

function blobPath(digest: string): string {
  const [algorithm, hex] = digest.split(':');
  if (algorithm !== 'sha256' || !hex) throw new Error(`unexpected digest ${digest}`);
  return `blobs/sha256/${hex}`;
}

/** Follows index.json to the image's manifest and config; fails unless the ref is annotated. */
async function readImage(image: ImageArchive) {
  const listing = (await run('tar', ['-tf', image.archive], { timeoutMs: 60_000 })).stdout.split('\n');
  expect(listing).toEqual(expect.arrayContaining(['index.json', 'oci-layout']));
  const index = JSON.parse(await member(image.archive, 'index.json')) as { manifests: Descriptor[] };
  expect(index.manifests).toHaveLength(1);
  const [descriptor] = index.manifests;
  if (!descriptor) throw new Error(`${image.archive}: index.json lists no manifest`);
  expect(descriptor.annotations?.['org.opencontainers.image.ref.name']).toBe(image.ref);
  const manifest = JSON.parse(await member(image.archive, blobPath(descriptor.digest))) as {
    config: Descriptor;
    layers: Descriptor[];
  };
  const config = JSON.parse(await member(image.archive, blobPath(manifest.config.digest))) as ImageConfig;
  expect(config.rootfs?.diff_ids).toHaveLength(manifest.layers.length);
  return { manifest, config };
}

/** Every path in the image's layers (tar detects gzip by itself), without a leading "./". */
async function rootfsPaths(image: ImageArchive, layers: Descriptor[]): Promise<Set<string>> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-image-test-'));
  try {
    const paths = new Set<string>();
    for (const layer of layers) {
      await run('tar', ['-xf', image.archive, '-C', dir, blobPath(layer.digest)], { timeoutMs: 120_000 });
      const listing = await run('tar', ['-tf', join(dir, blobPath(layer.digest))], { timeoutMs: 120_000 });
      for (const line of listing.stdout.split('\n')) if (line) paths.add(line.replace(/^\.\//, ''));
    }
    return paths;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('the lab images (lab/images/build.sh)', () => {
  let images: LabImages;

  beforeAll(async () => {
    images = await ensureImages();
  }, BUILD_TIMEOUT_MS);

  it(
    'are cached: a second run with nothing changed rewrites no archive',
    async () => {
      const archives = [images.tandem, images.pause, ...images.sidecars].map((image) => image.archive);
      const written = archives.map((archive) => statSync(archive).mtimeMs);
      const again = await ensureImages();
      expect(again).toEqual(images);
      expect(archives.map((archive) => statSync(archive).mtimeMs)).toEqual(written);
    },
    BUILD_TIMEOUT_MS,
  );

  it(
    "builds Tandem's image from the Dockerfile: user 1000, the CLI entrypoint, the node tools",
    async () => {
      expect(images.tandem.ref).toMatch(/^localhost\/tandem:[0-9a-f]{16}$/);
      const { manifest, config } = await readImage(images.tandem);
      expect(config.config?.User).toBe('1000:1000');
      expect(config.config?.Entrypoint).toEqual(['node', '/opt/tandem/dist/cli/main.js']);
      const paths = await rootfsPaths(images.tandem, manifest.layers);
      expect(paths.has('usr/local/bin/tandem-fsutil')).toBe(true);
      expect(paths.has('usr/bin/nbdfuse')).toBe(true);
      // Debian 12's e2fsprogs installs into /sbin, which is usr/sbin on a merged-/usr rootfs.
      expect(paths.has('usr/sbin/mkfs.ext4') || paths.has('sbin/mkfs.ext4')).toBe(true);
      expect(paths.has('opt/tandem/dist/cli/main.js')).toBe(true);
    },
    CHECK_TIMEOUT_MS,
  );

  it(
    'builds the pause image: one layer, /pause as entrypoint',
    async () => {
      expect(images.pause.ref).toBe('localhost/tandem-pause:1');
      const { manifest, config } = await readImage(images.pause);
      expect(config.config?.Entrypoint).toEqual(['/pause']);
      expect(manifest.layers).toHaveLength(1);
      expect(await rootfsPaths(images.pause, manifest.layers)).toContain('pause');
    },
    CHECK_TIMEOUT_MS,
  );

  it(
    "builds each CSI sidecar of the controller's manifest under exactly its reference",
    async () => {
      const controller = readFileSync(join(packageRoot(), 'manifests', 'driver', 'controller.yaml'), 'utf8');
      const names = ['csi-provisioner', 'csi-attacher', 'csi-resizer'];
      expect(images.sidecars.map((sidecar) => sidecar.ref.split('/').at(-1)?.split(':')[0])).toEqual(names);
      for (const sidecar of images.sidecars) {
        const name = sidecar.ref.split('/').at(-1)?.split(':')[0] ?? '';
        expect(controller).toContain(`image: ${sidecar.ref}\n`);
        const { manifest, config } = await readImage(sidecar);
        expect(config.config?.Entrypoint).toEqual([`/${name}`]);
        expect(manifest.layers).toHaveLength(1);
        expect(await rootfsPaths(sidecar, manifest.layers)).toContain(name);
      }
    },
    CHECK_TIMEOUT_MS,
  );
});
