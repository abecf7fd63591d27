import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { run } from '../lib/exec.js';
import { type Logger, silentLogger } from '../lib/log.js';
import { packageRoot } from '../lib/paths.js';

/** One image as an OCI archive on disk, and the reference it carries (and imports as). */
export interface ImageArchive {
  ref: string;
  archive: string;
}

/** Every image the lab's real kubelets run; what lab/images/build.sh writes to images.json. */
export interface LabImages {
  /** Tandem's image from the real Dockerfile, `localhost/tandem:<content key>`. */
  tandem: ImageArchive;
  /** QEMU and the built-in guest, `localhost/tandem-launcher:<key>`: what VM launcher pods run. */
  launcher: ImageArchive;
  /** The pod sandbox image containerd's `sandbox_image` names. */
  pause: ImageArchive;
  /** The CSI sidecars of manifests/driver/controller.yaml, tagged with the manifest's references. */
  sidecars: ImageArchive[];
}

export interface ImportOptions {
  logger?: Logger;
  /** containerd namespace; the CRI plugin (and so the kubelet) only sees `k8s.io`. */
  namespace?: string;
  timeoutMs?: number;
}

/** The script that builds (or finds cached) every image. */
export function imagesBuildScript(): string {
  return join(packageRoot(), 'lab', 'images', 'build.sh');
}

// A cold build makes a Debian rootfs, runs the Dockerfile (apt-get, npm ci, tsc) and writes a
// ~200 MB archive: minutes on a 2-core machine that is busy with other builds. Warm: seconds.
const BUILD_TIMEOUT_MS = 15 * 60_000;
// Importing unpacks the layers into the snapshotter; the Tandem image took ~9 s.
const IMPORT_TIMEOUT_MS = 5 * 60_000;

/**
 * Builds whatever images are missing (lab/images/build.sh, as root) and returns where they
 * are. The script holds a lock, so concurrent callers wait for one build instead of racing.
 */
export async function ensureImages(logger: Logger = silentLogger()): Promise<LabImages> {
  const script = imagesBuildScript();
  const started = Date.now();
  logger.info({ script }, 'ensuring container images (cold: minutes, cached: seconds)');
  const result = await run(script, [], { timeoutMs: BUILD_TIMEOUT_MS, logger });
  // The script's progress lines (with timings) are worth keeping in the lab's log.
  for (const line of result.stderr.split('\n')) if (line.trim()) logger.debug({ script }, line);
  const path = result.stdout.trim().split('\n').at(-1)?.trim() ?? '';
  if (!isAbsolute(path)) {
    throw new Error(`${script} did not print the path of images.json as its last line (got '${path}')`);
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path} written by ${script}: ${(err as Error).message}`);
  }
  const images = parseLabImages(text, path);
  logger.info({ ms: Date.now() - started, tandem: images.tandem.ref }, 'container images ready');
  return images;
}

// A distribution reference with an explicit tag (digests are not used here): what
// `ctr images import` names the image, so every ref must be fully qualified.
const REFERENCE =
  /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+:[\w][\w.-]{0,127}$/;

/** Parses and checks images.json, naming the offending field in the error. */
export function parseLabImages(text: string, source = 'images.json'): LabImages {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not JSON: ${(err as Error).message}`);
  }
  if (!isRecord(value))
    throw new Error(`${source}: expected an object with tandem, launcher, pause and sidecars`);
  const sidecars = value.sidecars;
  if (!Array.isArray(sidecars)) throw new Error(`${source}: sidecars must be an array`);
  return {
    tandem: parseArchive(value.tandem, `${source}: tandem`),
    launcher: parseArchive(value.launcher, `${source}: launcher`),
    pause: parseArchive(value.pause, `${source}: pause`),
    sidecars: sidecars.map((entry, i) => parseArchive(entry, `${source}: sidecars[${i}]`)),
  };
}

function parseArchive(value: unknown, where: string): ImageArchive {
  if (!isRecord(value)) throw new Error(`${where} must be an object with ref and archive`);
  const { ref, archive } = value;
  if (typeof ref !== 'string' || !REFERENCE.test(ref)) {
    throw new Error(`${where}.ref must be a fully qualified image reference with a tag, got ${show(ref)}`);
  }
  if (typeof archive !== 'string' || !isAbsolute(archive) || !archive.endsWith('.tar')) {
    throw new Error(`${where}.archive must be an absolute path to a .tar file, got ${show(archive)}`);
  }
  return { ref, archive };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

/**
 * Imports an OCI archive into a node's containerd (`ctr images import`, containerd 1.6) and
 * returns the references it created. `--all-platforms` because our archives carry exactly one
 * platform and ctr's default platform filter would otherwise depend on how the manifest
 * descriptor is annotated.
 */
export async function importImage(
  containerdAddress: string,
  archivePath: string,
  options: ImportOptions = {},
): Promise<string[]> {
  const args = [
    '--address',
    containerdAddress,
    '--namespace',
    options.namespace ?? 'k8s.io',
    'images',
    'import',
    '--all-platforms',
    archivePath,
  ];
  const result = await run('ctr', args, {
    timeoutMs: options.timeoutMs ?? IMPORT_TIMEOUT_MS,
    logger: options.logger,
  });
  const refs = parseImportedRefs(result.stdout);
  if (refs.length === 0) {
    throw new Error(
      `ctr imported no named image from ${archivePath}: ${result.stdout.trim() || 'no output'}`,
    );
  }
  options.logger?.debug({ archive: archivePath, refs }, 'image imported');
  return refs;
}

/**
 * ctr 1.6 prints `unpacking <ref> (sha256:<digest>)...done` once per image it imported and
 * unpacked; that is the only place it says which names the archive produced.
 */
export function parseImportedRefs(stdout: string): string[] {
  const refs: string[] = [];
  for (const match of stdout.matchAll(/^unpacking (\S+) \(sha256:[0-9a-f]{64}\)\.\.\.done$/gm)) {
    const ref = match[1];
    if (ref && !refs.includes(ref)) refs.push(ref);
  }
  return refs;
}
