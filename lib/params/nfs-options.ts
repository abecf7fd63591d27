import { isIP } from 'node:net';
import { didYouMean, parseStrictInteger } from './syntax.js';

/**
 * The `nfsOptions` StorageClass parameter: the mount options a node uses to
 * mount a ReadWriteMany Filesystem volume from its share manager. Checked
 * against the Linux NFS client's options (nfs(5)) at admission, because a bad
 * option would otherwise only show up as a failed mount in some pod's events,
 * long after the class was created.
 *
 * The share manager serves NFSv4 over TCP only, so NFSv2/v3 options, UDP and
 * RDMA are refused with that reason rather than passed on to be ignored.
 *
 * Decisions:
 * - Numbers are plain decimal: digits only, no sign, no spaces, and no leading
 *   zero, because the kernel parses "0600" as octal (384).
 * - `vers=4` alone is refused: it does not mean 4.0 but "negotiate the minor
 *   version". It is accepted with `minorversion=N` (the older spelling of
 *   `vers=4.N`).
 * - `intr`/`nointr` are refused: ignored since Linux 2.6.25.
 * - `sloppy` is refused: it makes mount.nfs ignore unknown options, and this
 *   check exists so that no option is ever ignored.
 * - `timeo` is at most 6000 (600 s): the kernel silently caps a TCP timeout
 *   there. `retrans` is at most 30: more makes a soft mount wait hours before
 *   reporting an error, which is a hard mount in disguise.
 * - `fsc` is a flag here (its undocumented `fsc=<id>` form is refused).
 *
 * The result is normalized: the options in the order given, with `nfsvers`
 * spelled `vers`, `vers=4,minorversion=N` spelled `vers=4.N` and `tcp`
 * spelled `proto=tcp`.
 */

export const DEFAULT_NFS_OPTIONS = 'vers=4.1,noresvport,softerr,timeo=600,retrans=5';

export type NfsOptionsResult = { ok: true; options: string } | { ok: false; errors: string[] };

// ---------------------------------------------------------------------------
// The option table.

/** Returns what is wrong with a value, or undefined when it is fine. */
type Check = (value: string) => string | undefined;

interface Flag {
  kind: 'flag';
  /** Options that set the same thing share a setting; two of them conflict. */
  setting: string;
}
interface Valued {
  kind: 'valued';
  setting: string;
  allowed: string;
  check: Check;
}
interface Refused {
  kind: 'refused';
  reason: string;
}
type Spec = Flag | Valued | Refused;

const U32_MAX = 4_294_967_295;
const NFSV4_VERSIONS = ['4.0', '4.1', '4.2'];

function integerIn(min: number, max: number): Check {
  return (value) => {
    const parsed = parseStrictInteger(value);
    if (!parsed.ok) {
      return parsed.leadingZero
        ? 'has a leading zero, which the kernel would read as an octal number'
        : 'is not a whole number';
    }
    return parsed.value < min || parsed.value > max ? 'is out of range' : undefined;
  };
}

function oneOf(allowed: readonly string[]): Check {
  return (value) => (allowed.includes(value) ? undefined : 'is not one of the allowed values');
}

const transferSize: Check = (value) =>
  integerIn(1024, 1_048_576)(value) ?? (Number(value) % 1024 === 0 ? undefined : 'is not a multiple of 1024');

const version: Check = (value) => {
  if (NFSV4_VERSIONS.includes(value) || value === '4') return undefined;
  if (/^[23](?:\.0)?$/.test(value)) {
    return `asks for NFSv${value[0]}, but Tandem's share manager serves NFSv4 only`;
  }
  return 'is not an NFS version Tandem serves';
};

const transport: Check = (value) => {
  if (value === 'tcp' || value === 'tcp6') return undefined;
  if (value === 'udp' || value === 'udp6') {
    return "asks for UDP, but NFSv4 runs over TCP and Tandem's share manager serves TCP only";
  }
  if (value === 'rdma' || value === 'rdma6') {
    return "asks for RDMA, but Tandem's share manager serves NFS over TCP only";
  }
  return 'is not a transport Tandem serves';
};

const SEC_FLAVORS = ['sys', 'krb5', 'krb5i', 'krb5p'];
const securityFlavors: Check = (value) => {
  const flavors = value.split(':');
  if (flavors.some((f) => !SEC_FLAVORS.includes(f))) return 'names a flavor that is not allowed';
  if (new Set(flavors).size !== flavors.length) return 'names a flavor twice';
  return undefined;
};

const ipAddress: Check = (value) => (isIP(value) === 0 ? 'is not an IP address' : undefined);

const seconds = (setting: string): Valued => ({
  kind: 'valued',
  setting,
  allowed: `seconds, a whole number from 0 to ${U32_MAX}`,
  check: integerIn(0, U32_MAX),
});

const NFSV3_ONLY =
  "is for NFSv3 only (nfs(5)) and Tandem's share manager serves NFSv4, where it has no effect; remove it";

const OPTIONS = new Map<string, Spec>();
function flags(setting: string, ...names: string[]): void {
  for (const name of names) OPTIONS.set(name, { kind: 'flag', setting });
}
function valued(names: string[], setting: string, allowed: string, check: Check): void {
  for (const name of names) OPTIONS.set(name, { kind: 'valued', setting, allowed, check });
}
function refused(reason: string, ...names: string[]): void {
  for (const name of names) OPTIONS.set(name, { kind: 'refused', reason });
}

// Options for every NFS version (nfs(5), "Options supported by all versions").
valued(['vers', 'nfsvers'], 'the NFS version', `${NFSV4_VERSIONS.join(', ')}`, version);
flags('what happens when the server stops answering', 'soft', 'softerr', 'hard');
flags('the fallback to cached attributes when revalidation times out', 'softreval', 'nosoftreval');
valued(
  ['timeo'],
  'timeo',
  'tenths of a second, a whole number from 1 to 6000 (the kernel caps the timeout at 600 s)',
  integerIn(1, 6000),
);
valued(['retrans'], 'retrans', 'a whole number from 1 to 30', integerIn(1, 30));
valued(['rsize'], 'rsize', 'bytes, a multiple of 1024 from 1024 to 1048576', transferSize);
valued(['wsize'], 'wsize', 'bytes, a multiple of 1024 from 1024 to 1048576', transferSize);
flags('attribute caching', 'ac', 'noac');
for (const name of ['acregmin', 'acregmax', 'acdirmin', 'acdirmax', 'actimeo']) {
  OPTIONS.set(name, seconds(name));
}
flags('foreground or background mounting', 'bg', 'fg');
valued(['nconnect'], 'nconnect', 'a whole number from 1 to 16', integerIn(1, 16));
valued(['max_connect'], 'max_connect', 'a whole number from 1 to 16', integerIn(1, 16));
flags('READDIRPLUS use', 'rdirplus', 'nordirplus');
valued(['retry'], 'retry', `minutes, a whole number from 0 to ${U32_MAX}`, integerIn(0, U32_MAX));
valued(['sec'], 'sec', `one or more of ${SEC_FLAVORS.join(', ')}, separated by ':'`, securityFlavors);
flags('cache sharing between mounts', 'sharecache', 'nosharecache');
flags('the source port', 'resvport', 'noresvport');
valued(
  ['lookupcache'],
  'lookupcache',
  'all, none, pos or positive',
  oneOf(['all', 'none', 'pos', 'positive']),
);
flags('FS-Cache use', 'fsc', 'nofsc');
valued(['write'], 'write', 'lazy, eager or wait', oneOf(['lazy', 'eager', 'wait']));
valued(['xprtsec'], 'xprtsec', 'none, tls or mtls', oneOf(['none', 'tls', 'mtls']));
flags('session trunking discovery', 'trunkdiscovery', 'notrunkdiscovery');
// Options for NFSv4 (proto and port are listed for v2/v3 too, with more transports).
valued(['proto'], 'the transport', 'tcp or tcp6', transport);
flags('the transport', 'tcp'); // nfs(5): "an alternative to specifying proto=tcp"
valued(['minorversion'], 'the NFSv4 minor version', '0, 1 or 2, matching vers', integerIn(0, 2));
valued(['port'], 'port', 'a whole number from 0 to 65535', integerIn(0, 65535));
flags('close-to-open consistency', 'cto', 'nocto');
valued(['clientaddr'], 'clientaddr', 'an IPv4 or IPv6 address', ipAddress);
flags('the NFSv4 migration client identity', 'migration', 'nomigration');
// Generic mount options (mount(8)) that make sense on an NFS mount.
flags('read-only or read-write', 'ro', 'rw');
flags('access time updates', 'atime', 'noatime', 'relatime');
flags('directory access time updates', 'nodiratime');
flags('set-user-ID bits', 'suid', 'nosuid');
flags('device files', 'dev', 'nodev');
flags('program execution', 'exec', 'noexec');
flags('synchronous writes', 'sync', 'async');

refused(NFSV3_ONLY, 'mountport', 'mountproto', 'mounthost', 'mountvers', 'namlen');
refused(NFSV3_ONLY, 'lock', 'nolock', 'acl', 'noacl', 'local_lock');
const USE_TCP = 'use proto=tcp or proto=tcp6, or leave the transport out (TCP is the default)';
refused(
  `asks for UDP, but NFSv4 runs over TCP and Tandem's share manager serves TCP only; ${USE_TCP}`,
  'udp',
);
refused(`asks for RDMA, but Tandem's share manager serves NFS over TCP only; ${USE_TCP}`, 'rdma');
refused(
  'is ignored since Linux 2.6.25 (only SIGKILL interrupts a waiting NFS request); remove it',
  'intr',
  'nointr',
);
refused(
  'makes mount.nfs silently ignore options it does not know; Tandem checks every option instead, remove it',
  'sloppy',
);

const ACCEPTED_NAMES = [...OPTIONS].filter(([, spec]) => spec.kind !== 'refused').map(([name]) => name);

// ---------------------------------------------------------------------------
// Parsing.

interface Item {
  text: string;
  name: string;
  value: string | undefined;
}

/** The syntax of one item against the table; undefined when it is fine. */
function itemProblem(item: Item, position: number): string | undefined {
  const { text, name, value } = item;
  if (text === '') {
    return `item ${position} is empty (a leading, trailing or doubled ','); separate options with single commas`;
  }
  if (/\s/.test(text)) {
    return `"${text}" contains whitespace; options are separated by ',' alone, e.g. "${DEFAULT_NFS_OPTIONS}"`;
  }
  if (name === '') return `"${text}" has no option name before '='; write name=value, e.g. "timeo=600"`;
  const spec = OPTIONS.get(name);
  if (spec === undefined) {
    const suggestion = didYouMean(name, ACCEPTED_NAMES);
    const hint = suggestion
      ? `did you mean "${suggestion}"? (option names are case-sensitive)`
      : `allowed (nfs(5), NFSv4 over TCP): ${ACCEPTED_NAMES.join(', ')}`;
    return `"${name}" is not a Linux NFS mount option Tandem accepts; ${hint}`;
  }
  if (spec.kind === 'refused') return `"${text}" ${spec.reason}`;
  if (spec.kind === 'flag') {
    return value === undefined ? undefined : `"${text}": ${name} takes no value; write just "${name}"`;
  }
  const allowed = `allowed for ${name}: ${spec.allowed}`;
  if (value === undefined || value === '') return `"${text}" has no value; write ${name}=<value>, ${allowed}`;
  const problem = spec.check(value);
  return problem === undefined ? undefined : `"${text}" ${problem}; ${allowed}`;
}

function settingOf(name: string): string {
  const spec = OPTIONS.get(name);
  return spec && spec.kind !== 'refused' ? spec.setting : name;
}

/** Other spellings of an option (nfs(5)): nfsvers is vers, tcp is proto=tcp. */
const ALIASES = new Set(['nfsvers', 'tcp']);

/** Two options that set the same thing, e.g. "soft" and "hard", or "vers" and "nfsvers". */
function conflicts(items: readonly Item[]): string[] {
  const first = new Map<string, Item>();
  const errors: string[] = [];
  for (const item of items) {
    const setting = settingOf(item.name);
    const earlier = first.get(setting);
    if (earlier === undefined) first.set(setting, item);
    else if (earlier.name === item.name) {
      errors.push(`"${item.name}" is given more than once ("${earlier.text}", "${item.text}"); give it once`);
    } else if (ALIASES.has(item.name) || ALIASES.has(earlier.name)) {
      errors.push(
        `"${earlier.text}" and "${item.text}" are the same option (both set ${setting}); give it once`,
      );
    } else {
      errors.push(
        `"${earlier.text}" and "${item.text}" are mutually exclusive (both set ${setting}); give only one`,
      );
    }
  }
  return errors;
}

/** The rules that span options: version consistency, hard, attribute cache bounds. */
interface Given {
  vers: boolean;
  minorversion: boolean;
}

function crossChecks(items: readonly Item[], given: Given, hardAcknowledged: boolean): string[] {
  const errors: string[] = [];
  const optionValue = (name: string) => items.find((i) => i.name === name)?.value;
  const has = (name: string) => items.some((i) => i.name === name);
  const vers = items.find((i) => i.name === 'vers' || i.name === 'nfsvers');
  const minor = optionValue('minorversion');

  if (vers?.value === '4' && !given.minorversion) {
    errors.push(
      `"${vers.text}" lets the client negotiate the minor version; allowed: ${vers.name}=4.0, 4.1 or 4.2 (or add minorversion=0, 1 or 2)`,
    );
  }
  if (minor !== undefined && !given.vers) {
    errors.push(
      `"minorversion=${minor}" needs vers=4 next to it; allowed: vers=4.${minor}, or vers=4,minorversion=${minor}`,
    );
  }
  if (minor !== undefined && vers?.value !== undefined && vers.value !== '4' && vers.value !== `4.${minor}`) {
    errors.push(
      `"minorversion=${minor}" contradicts "${vers.text}"; allowed: minorversion=${vers.value.slice(2)} with it, or leave minorversion out`,
    );
  }
  if (has('hard') && !hardAcknowledged) {
    errors.push(
      '"hard" makes client pods block forever, unkillable, if the share manager is lost; set nfsHardMountAcknowledged: "true" on the class to accept that, or use softerr (the default) or soft',
    );
  }
  const individual = ['acregmin', 'acregmax', 'acdirmin', 'acdirmax'].filter(has);
  if (has('actimeo') && individual.length > 0) {
    errors.push(
      `"actimeo" sets acregmin, acregmax, acdirmin and acdirmax at once, so it conflicts with ${individual.join(', ')}; give either actimeo or the individual ones`,
    );
  }
  for (const [min, max] of [
    ['acregmin', 'acregmax'],
    ['acdirmin', 'acdirmax'],
  ] as const) {
    const low = optionValue(min);
    const high = optionValue(max);
    if (low !== undefined && high !== undefined && Number(low) > Number(high)) {
      errors.push(`"${min}=${low}" is larger than "${max}=${high}"; allowed: ${min} at most ${max}`);
    }
  }
  return errors;
}

/** The normalized spelling of one accepted item (see the module comment). */
function normalize(item: Item, minor: string | undefined): string | undefined {
  if (item.name === 'minorversion') return undefined;
  if (item.name === 'tcp') return 'proto=tcp';
  if (item.name === 'vers' || item.name === 'nfsvers') {
    return `vers=${item.value === '4' ? `4.${minor}` : item.value}`;
  }
  return item.text;
}

function splitItem(text: string): Item {
  const eq = text.indexOf('=');
  return eq < 0
    ? { text, name: text, value: undefined }
    : { text, name: text.slice(0, eq), value: text.slice(eq + 1) };
}

/**
 * Parses a comma-separated list of NFS mount options. `hard` is accepted only
 * with `hardAcknowledged` (the class's nfsHardMountAcknowledged: "true").
 * Every problem is reported, each prefixed with the parameter name.
 */
export function parseNfsOptions(value: string, hardAcknowledged: boolean): NfsOptionsResult {
  if (value === '') {
    return {
      ok: false,
      errors: [
        `nfsOptions: is empty; give a comma-separated list of NFS mount options, or leave the parameter out for the default "${DEFAULT_NFS_OPTIONS}"`,
      ],
    };
  }
  const items = value.split(',').map(splitItem);
  const errors: string[] = [];
  const good: Item[] = [];
  items.forEach((item, index) => {
    const problem = itemProblem(item, index + 1);
    if (problem === undefined) good.push(item);
    else errors.push(problem);
  });
  const given = {
    vers: items.some((i) => i.name === 'vers' || i.name === 'nfsvers'),
    minorversion: items.some((i) => i.name === 'minorversion'),
  };
  errors.push(...conflicts(good), ...crossChecks(good, given, hardAcknowledged));
  if (errors.length > 0) return { ok: false, errors: errors.map((e) => `nfsOptions: ${e}`) };

  const minor = good.find((i) => i.name === 'minorversion')?.value;
  const options = good.flatMap((item) => normalize(item, minor) ?? []);
  return { ok: true, options: options.join(',') };
}
