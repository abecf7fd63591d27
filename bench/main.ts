/**
 * `npm run bench -- <name>`: runs one benchmark; its last line of output is one
 * JSON object with the figures and their ratios to the reference measured in
 * the same run.
 */
import { benchCsi } from './csi.js';
import { benchDataplane } from './dataplane.js';
import { benchFileWrites } from './file-writes.js';
import { benchMigration } from './migration.js';
import { benchNfs } from './nfs.js';
import { benchPods } from './pods.js';
import { benchVmMigration } from './vm-migration.js';
import { benchWebhook } from './webhook.js';

const BENCHMARKS: Record<string, () => Promise<Record<string, unknown>>> = {
  csi: benchCsi,
  dataplane: benchDataplane,
  'file-writes': benchFileWrites,
  migration: benchMigration,
  nfs: benchNfs,
  pods: benchPods,
  'vm-migration': benchVmMigration,
  webhook: benchWebhook,
};

const name = process.argv[2];
const bench = name ? BENCHMARKS[name] : undefined;
if (!bench) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHMARKS).join('|')}>\n`);
  process.exit(2);
}
try {
  const result = await bench();
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (err) {
  process.stderr.write(`bench ${name} failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
}
