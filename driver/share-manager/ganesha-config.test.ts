import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import {
  DEBIAN_GANESHA_PLUGINS,
  failoverTimings,
  type GaneshaBlock,
  type GaneshaValue,
  ganeshaBlocks,
  renderGaneshaConfig,
} from './ganesha-config.js';

/** Ganesha's own option reference, as Debian's nfs-ganesha-doc ships it. */
const DOC = '/usr/share/doc/nfs-ganesha-doc/config_samples/config.txt.gz';

interface DocumentedOption {
  type: string;
  values?: string[];
  range?: [number, number];
}

/**
 * Parses config.txt: sections headed "NAME {}" or "EXPORT { FSAL {} }" over a line of dashes,
 * options as "\tName(type, values [a, b] | range x to y, default d)", possibly over several lines.
 */
function documentedOptions(): Map<string, Map<string, DocumentedOption>> {
  const text = gunzipSync(readFileSync(DOC)).toString('utf8');
  const lines = text.split('\n');
  const sections = new Map<string, Map<string, DocumentedOption>>();
  let current: Map<string, DocumentedOption> | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const heading = /^([A-Z_0-9]+(?: \{ [A-Z_]+ +(?:\{ [A-Z_]+ \{\} \}|\{\}) \})?) *(?:\{\})?$/.exec(
      line.trim(),
    );
    if (heading && /^-+$/.test((lines[i + 1] ?? '').trim())) {
      const path = (heading[1] as string)
        .replace(/\s*\{\s*/g, '/')
        .replace(/[\s{}]/g, '')
        .replace(/\/+$/, '');
      current = new Map();
      sections.set(path.toUpperCase(), current);
      continue;
    }
    const option = /^\s+([A-Za-z_0-9]+)\s*\((.*)$/.exec(line);
    if (!current || !option) continue;
    let spec = option[2] as string;
    while (!spec.includes(')') && i + 1 < lines.length) spec += ` ${(lines[++i] as string).trim()}`;
    spec = spec.slice(0, spec.lastIndexOf(')'));
    const values = /values \[([^\]]*)\]/
      .exec(spec)?.[1]
      ?.split(',')
      .map((v) => v.trim().toLowerCase());
    const range = /range (-?\d+) to (-?\d+)/.exec(spec);
    current.set((option[1] as string).toLowerCase(), {
      type: (spec.split(',')[0] as string).trim(),
      ...(values ? { values } : {}),
      ...(range ? { range: [Number(range[1]), Number(range[2])] as [number, number] } : {}),
    });
  }
  return sections;
}

const settings = {
  exportPath: '/srv/share/export',
  recoveryRoot: '/srv/share/.tandem/nfs-recovery',
  serverScope: 'tandem-pvc-0123',
  bindAddress: '198.18.0.10',
  port: 2049,
  pluginsDir: DEBIAN_GANESHA_PLUGINS,
  ...failoverTimings(false),
};

function check(value: GaneshaValue, documented: DocumentedOption, where: string): void {
  const items = Array.isArray(value) ? value : [value];
  for (const item of items) {
    if (documented.values)
      expect({
        where,
        value: String(item).toLowerCase(),
        allowed: documented.values.includes(String(item).toLowerCase()),
      }).toMatchObject({ allowed: true });
    if (documented.range && typeof item === 'number') {
      expect(item).toBeGreaterThanOrEqual(documented.range[0]);
      expect(item).toBeLessThanOrEqual(documented.range[1]);
    }
    if (documented.type === 'bool') expect(typeof item).toBe('boolean');
  }
}

describe('Ganesha configuration', () => {
  const docs = documentedOptions();

  test('the reference document parses into the blocks Ganesha lists', () => {
    for (const block of [
      'NFS_CORE_PARAM',
      'NFSV4',
      'NFS_KRB5',
      'EXPORT',
      'EXPORT_DEFAULTS',
      'EXPORT/FSAL',
      'LOG',
    ])
      expect(docs.get(block)?.size ?? 0).toBeGreaterThan(0);
    expect(docs.get('NFSV4')?.get('recoverybackend')?.values).toContain('fs_ng');
  });

  test.each([false, true])('every option set (fast failover %s) is documented with a legal value', (fast) => {
    const visit = (block: GaneshaBlock, path: string) => {
      const own = docs.get(path);
      // EXPORT takes every "export permissions" option of EXPORT_DEFAULTS.
      const inherited = path === 'EXPORT' ? docs.get('EXPORT_DEFAULTS') : undefined;
      expect({ block: path, documented: own !== undefined }).toEqual({ block: path, documented: true });
      for (const [key, value] of block.options) {
        const documented = own?.get(key.toLowerCase()) ?? inherited?.get(key.toLowerCase());
        expect({ option: `${path}.${key}`, documented: documented !== undefined }).toEqual({
          option: `${path}.${key}`,
          documented: true,
        });
        if (documented) check(value, documented, `${path}.${key}`);
      }
      for (const inner of block.blocks ?? []) visit(inner, `${path}/${inner.name}`);
    };
    for (const block of ganeshaBlocks({ ...settings, ...failoverTimings(fast) })) visit(block, block.name);
  });

  test('NFSv4.1 and 4.2 over TCP only, no side protocols, records outside the export', () => {
    const text = renderGaneshaConfig(settings);
    expect(text).toMatch(/NFS_Protocols = 4;/);
    expect(text).toMatch(/Minor_Versions = 1, 2;/);
    expect(text).toMatch(/Transports = TCP;/);
    expect(text).toMatch(/Enable_NLM = false;/);
    expect(text).toMatch(/Enable_RQUOTA = false;/);
    expect(text).toMatch(/RecoveryBackend = fs_ng;/);
    expect(text).toMatch(/RecoveryRoot = "\/srv\/share\/.tandem\/nfs-recovery";/);
    expect(text).toMatch(/Server_Scope = "tandem-pvc-0123";/);
    expect(text).toMatch(/Grace_Period = 90;/);
  });

  test('fast failover shortens grace to 30 s and keeps it longer than the lease', () => {
    expect(failoverTimings(true)).toEqual({ graceSeconds: 30, leaseSeconds: 20 });
    expect(renderGaneshaConfig({ ...settings, ...failoverTimings(true) })).toMatch(/Grace_Period = 30;/);
    expect(() => ganeshaBlocks({ ...settings, graceSeconds: 10, leaseSeconds: 20 })).toThrow(
      /grace \(10 s\)/,
    );
  });

  test('recovery records under the export are refused: clients would see them', () => {
    expect(() => ganeshaBlocks({ ...settings, recoveryRoot: '/srv/share/export/.recovery' })).toThrow(
      /must live outside the export/,
    );
  });

  test('a value that cannot be quoted is refused, not written broken', () => {
    expect(() => renderGaneshaConfig({ ...settings, serverScope: 'a"b' })).toThrow(/cannot be quoted/);
  });
});
