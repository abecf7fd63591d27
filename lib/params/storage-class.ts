import { labelKeyProblems, labelValueProblems } from './label-syntax.js';
import { DEFAULT_NFS_OPTIONS, parseNfsOptions } from './nfs-options.js';
import { didYouMean, parseStrictInteger } from './syntax.js';

/**
 * StorageClass parameters: parsed and checked by the admission webhook when a
 * class is created, and again by CreateVolume (webhooks can be bypassed). An
 * unknown key or a malformed value is refused, never ignored or downgraded;
 * every problem is reported at once, each naming the parameter, what was wrong
 * and what is allowed.
 *
 * Values are strict, so a class means the same thing to every reader:
 * - no trimming and no case folding: " true", "True", "yes" and "1" are not
 *   booleans, only "true" and "false" are;
 * - integers are plain decimal digits: "3.0", "+3", "three", "" and "03" are
 *   refused (a leading zero is how other parsers spell octal);
 * - staleReplicaTimeout is one whole number with one unit (s, m or h): "2880",
 *   "1.5h", "1h30m" and "2d" are refused;
 * - a list parameter given as "" is refused (leave it out for "none"), and so
 *   is an empty item, including a trailing ';'.
 */

export { DEFAULT_NFS_OPTIONS } from './nfs-options.js';

export interface Toleration {
  key: string;
  operator: 'Equal' | 'Exists';
  value?: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

export interface TandemClassParameters {
  numberOfReplicas: number;
  staleReplicaTimeoutSeconds: number;
  migratable: boolean;
  fsType: 'ext4' | 'xfs';
  nfsOptions: string;
  shareManagerNodeSelector: Record<string, string>;
  shareManagerTolerations: Toleration[];
  /** Share managers with grace 30 s and a Lease heartbeat every few seconds (default: grace 90 s). */
  fastFailover: boolean;
}

export type ParseResult = { ok: true; value: TandemClassParameters } | { ok: false; errors: string[] };

type Parsed<T> = { ok: true; value: T } | { ok: false; errors: string[] };

const TANDEM_KEYS = [
  'numberOfReplicas',
  'staleReplicaTimeout',
  'migratable',
  'fsType',
  'nfsOptions',
  'nfsHardMountAcknowledged',
  'shareManagerNodeSelector',
  'shareManagerTolerations',
  'fastFailover',
] as const;

/** external-provisioner interprets these keys itself and strips them before CreateVolume. */
const PROVISIONER_PREFIX = 'csi.storage.k8s.io/';
const FSTYPE_KEY = `${PROVISIONER_PREFIX}fstype`;
const SECRET_STAGES = [
  'provisioner',
  'controller-publish',
  'node-stage',
  'node-publish',
  'controller-expand',
  'node-expand',
] as const;
const secretKeys = (stage: string) =>
  [`${PROVISIONER_PREFIX}${stage}-secret-name`, `${PROVISIONER_PREFIX}${stage}-secret-namespace`] as const;

/** Every key a Tandem StorageClass may carry, for docs and error messages. */
export const STORAGE_CLASS_PARAMETER_KEYS: readonly string[] = Object.freeze([
  ...TANDEM_KEYS,
  FSTYPE_KEY,
  ...SECRET_STAGES.flatMap(secretKeys),
]);

const DEFAULT_REPLICAS = 3;
const DEFAULT_STALE_REPLICA_TIMEOUT = '48h';
const FS_TYPES = ['ext4', 'xfs'] as const;
const EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const;

/**
 * A migratable class serves only ReadWriteMany Block volumes: no filesystem is
 * made and no share manager exports anything, so these keys would do nothing.
 */
const NOT_FOR_MIGRATABLE: ReadonlyArray<readonly [string, string]> = [
  ['fsType', 'have no filesystem'],
  [FSTYPE_KEY, 'have no filesystem'],
  ['nfsOptions', 'are never exported over NFS'],
  ['nfsHardMountAcknowledged', 'are never exported over NFS'],
  ['shareManagerNodeSelector', 'never get a share manager'],
  ['shareManagerTolerations', 'never get a share manager'],
  ['fastFailover', 'never get a share manager'],
];

// ---------------------------------------------------------------------------
// One parser per value kind; each message starts with the parameter name.

function parseBoolean(key: string, value: string): Parsed<boolean> {
  if (value === 'true' || value === 'false') return { ok: true, value: value === 'true' };
  return {
    ok: false,
    errors: [`${key}: "${value}" is not allowed; use exactly "true" or "false" (lower case, no spaces)`],
  };
}

function parseReplicas(value: string): Parsed<number> {
  const allowed = `allowed: a whole number from 1 to 5, in plain digits (default ${DEFAULT_REPLICAS})`;
  const parsed = parseStrictInteger(value);
  if (!parsed.ok) {
    const what = parsed.leadingZero ? 'has a leading zero' : 'is not a whole number';
    return { ok: false, errors: [`numberOfReplicas: "${value}" ${what}; ${allowed}`] };
  }
  if (parsed.value < 1 || parsed.value > 5) {
    return { ok: false, errors: [`numberOfReplicas: ${value} is out of range; ${allowed}`] };
  }
  return { ok: true, value: parsed.value };
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 };
const MIN_STALE_SECONDS = 60;
const MAX_STALE_SECONDS = 168 * 3600;

function parseStaleReplicaTimeout(value: string): Parsed<number> {
  const allowed = `allowed: a whole number with the unit s, m or h, from 1m to 168h (default ${DEFAULT_STALE_REPLICA_TIMEOUT})`;
  const refuse = (what: string): Parsed<number> => ({
    ok: false,
    errors: [`staleReplicaTimeout: "${value}" ${what}; ${allowed}`],
  });
  if (/^[0-9]+$/.test(value)) return refuse('has no unit (write e.g. "48h", not "2880")');
  const days = /^([1-9][0-9]*)d$/.exec(value);
  if (days) return refuse(`uses days, which are not a unit here (write "${Number(days[1]) * 24}h")`);
  const match = /^([0-9]+)([smh])$/.exec(value);
  if (!match?.[1] || !match[2]) return refuse('is not a duration');
  const amount = parseStrictInteger(match[1]);
  if (!amount.ok) return refuse('has a leading zero');
  const seconds = amount.value * (UNIT_SECONDS[match[2]] ?? 1);
  if (seconds < MIN_STALE_SECONDS || seconds > MAX_STALE_SECONDS) return refuse('is out of range');
  return { ok: true, value: seconds };
}

function parseFsType(key: string, value: string): Parsed<'ext4' | 'xfs'> {
  const found = FS_TYPES.find((t) => t === value);
  if (found) return { ok: true, value: found };
  return { ok: false, errors: [`${key}: "${value}" is not supported; allowed: ext4 or xfs (default ext4)`] };
}

interface ListItems {
  items: string[];
  errors: string[];
}

/**
 * Splits a ';' list. "" and empty items are errors; the non-empty items are
 * still returned so that their own problems are reported in the same pass.
 */
function splitList(key: string, value: string, example: string): ListItems {
  const form = `allowed: items separated by single ';', e.g. "${example}"`;
  if (value === '') {
    return { items: [], errors: [`${key}: is empty; leave the parameter out for none, or ${form}`] };
  }
  const all = value.split(';');
  const errors = all.flatMap((item, index) =>
    item === '' ? [`${key}: item ${index + 1} is empty (a leading, trailing or doubled ';'); ${form}`] : [],
  );
  return { items: all.filter((item) => item !== ''), errors };
}

const NODE_SELECTOR_EXAMPLE = 'kubernetes.io/os:linux;topology.kubernetes.io/zone:zone-a';

export function parseNodeSelector(value: string): Parsed<Record<string, string>> {
  const key = 'shareManagerNodeSelector';
  const { items, errors } = splitList(key, value, NODE_SELECTOR_EXAMPLE);
  const selector: Record<string, string> = {};
  const seen = new Set<string>();
  for (const item of items) {
    const colon = item.indexOf(':');
    if (colon < 0) {
      const hint = item.includes('=') ? " (use ':' between key and value, not '=')" : '';
      errors.push(`${key}: "${item}" is not key:value${hint}; allowed: e.g. "${NODE_SELECTOR_EXAMPLE}"`);
      continue;
    }
    const labelKey = item.slice(0, colon);
    const labelValue = item.slice(colon + 1);
    const problems = [...labelKeyProblems(labelKey), ...labelValueProblems(labelValue)];
    if (problems.length > 0) {
      errors.push(...problems.map((p) => `${key}: in "${item}", ${p}`));
    } else if (seen.has(labelKey)) {
      errors.push(`${key}: the key "${labelKey}" is given more than once; allowed: one value per key`);
    } else {
      seen.add(labelKey);
      selector[labelKey] = labelValue;
    }
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: selector };
}

function effectProblem(effect: string): string | undefined {
  if (EFFECTS.some((e) => e === effect)) return undefined;
  const allowed = `allowed: ${EFFECTS.join(', ')} (case-sensitive)`;
  if (effect === '') return `the effect is empty; ${allowed}`;
  const suggestion = didYouMean(effect, EFFECTS);
  return `the effect "${effect}" is not allowed; ${suggestion ? `did you mean "${suggestion}"? ` : ''}${allowed}`;
}

/** One item: "key=value:Effect" (operator Equal) or "key:Effect" (operator Exists). */
function parseToleration(item: string): Parsed<Toleration> {
  const key = 'shareManagerTolerations';
  const colon = item.lastIndexOf(':');
  if (colon < 0) {
    return {
      ok: false,
      errors: [
        `${key}: "${item}" has no effect; allowed: key=value:Effect or key:Effect, with Effect one of ${EFFECTS.join(', ')}`,
      ],
    };
  }
  const effect = item.slice(colon + 1);
  const left = item.slice(0, colon);
  const eq = left.indexOf('=');
  const tolerationKey = eq < 0 ? left : left.slice(0, eq);
  const value = eq < 0 ? undefined : left.slice(eq + 1);
  const problems = [
    ...labelKeyProblems(tolerationKey),
    ...(value === undefined ? [] : labelValueProblems(value)),
  ];
  const badEffect = effectProblem(effect);
  if (badEffect) problems.push(badEffect);
  if (problems.length > 0) return { ok: false, errors: problems.map((p) => `${key}: in "${item}", ${p}`) };
  const typedEffect = EFFECTS.find((e) => e === effect) ?? 'NoSchedule';
  return {
    ok: true,
    value:
      value === undefined
        ? { key: tolerationKey, operator: 'Exists', effect: typedEffect }
        : { key: tolerationKey, operator: 'Equal', value, effect: typedEffect },
  };
}

export function parseTolerations(value: string): Parsed<Toleration[]> {
  const key = 'shareManagerTolerations';
  const example = 'dedicated=storage:NoSchedule;node.kubernetes.io/unreachable:NoExecute';
  const { items, errors } = splitList(key, value, example);
  const tolerations: Toleration[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const parsed = parseToleration(item);
    if (!parsed.ok) errors.push(...parsed.errors);
    else if (seen.has(item))
      errors.push(`${key}: "${item}" is given more than once; allowed: each toleration once`);
    else {
      seen.add(item);
      tolerations.push(parsed.value);
    }
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: tolerations };
}

// ---------------------------------------------------------------------------
// The whole map.

function unknownKeyMessage(key: string): string {
  const suggestion = didYouMean(key, STORAGE_CLASS_PARAMETER_KEYS);
  const hint = suggestion
    ? `did you mean "${suggestion}"? (keys are case-sensitive)`
    : `allowed: ${STORAGE_CLASS_PARAMETER_KEYS.join(', ')}`;
  return `${key}: is not a parameter of a Tandem StorageClass; ${hint}`;
}

/** external-provisioner needs a secret's name and namespace together, or neither. */
function secretProblems(get: (key: string) => string | undefined): string[] {
  const errors: string[] = [];
  for (const stage of SECRET_STAGES) {
    const [nameKey, namespaceKey] = secretKeys(stage);
    for (const key of [nameKey, namespaceKey]) {
      if (get(key) === '')
        errors.push(`${key}: is empty; allowed: a name, or a template such as \${pvc.name}`);
    }
    if ((get(nameKey) === undefined) !== (get(namespaceKey) === undefined)) {
      const [given, missing] = get(nameKey) === undefined ? [namespaceKey, nameKey] : [nameKey, namespaceKey];
      errors.push(`${given}: is given without ${missing}; allowed: both of them, or neither`);
    }
  }
  return errors;
}

/** Collects the errors of a Parsed and returns its value, or the fallback. */
function take<T>(errors: string[], parsed: Parsed<T> | undefined, fallback: T): T {
  if (parsed === undefined) return fallback;
  if (parsed.ok) return parsed.value;
  errors.push(...parsed.errors);
  return fallback;
}

export function parseStorageClassParameters(parameters: Record<string, string> | undefined): ParseResult {
  const params = parameters ?? {};
  const get = (key: string): string | undefined => (Object.hasOwn(params, key) ? params[key] : undefined);
  const known = new Set(STORAGE_CLASS_PARAMETER_KEYS);
  const errors = Object.keys(params)
    .filter((key) => !known.has(key))
    .map(unknownKeyMessage);
  const optional = <T>(key: string, parse: (value: string) => Parsed<T>, fallback: T): T => {
    const value = get(key);
    return take(errors, value === undefined ? undefined : parse(value), fallback);
  };

  const numberOfReplicas = optional('numberOfReplicas', parseReplicas, DEFAULT_REPLICAS);
  const staleReplicaTimeoutSeconds = optional('staleReplicaTimeout', parseStaleReplicaTimeout, 48 * 3600);
  const migratable = optional('migratable', (v) => parseBoolean('migratable', v), false);
  errors.push(...secretProblems(get));

  let fsType: TandemClassParameters['fsType'] = 'ext4';
  let nfsOptions = DEFAULT_NFS_OPTIONS;
  let shareManagerNodeSelector: Record<string, string> = {};
  let shareManagerTolerations: Toleration[] = [];
  let fastFailover = false;
  if (migratable) {
    for (const [key, why] of NOT_FOR_MIGRATABLE) {
      if (get(key) === undefined) continue;
      errors.push(
        `${key}: has no effect on a migratable class (migratable: "true"), which serves only ReadWriteMany Block volumes, and those ${why}; remove ${key}, or put Filesystem volumes in a class with migratable: "false"`,
      );
    }
  } else {
    const own = optional('fsType', (v) => parseFsType('fsType', v), undefined);
    const provisioner = optional(FSTYPE_KEY, (v) => parseFsType(FSTYPE_KEY, v), undefined);
    if (own && provisioner && own !== provisioner) {
      errors.push(
        `fsType: "${own}" disagrees with ${FSTYPE_KEY} "${provisioner}"; allowed: the same filesystem in both, or only one of them`,
      );
    }
    fsType = own ?? provisioner ?? 'ext4';
    const hardAcknowledged = optional(
      'nfsHardMountAcknowledged',
      (v) => parseBoolean('nfsHardMountAcknowledged', v),
      false,
    );
    nfsOptions = optional(
      'nfsOptions',
      (v) => {
        const parsed = parseNfsOptions(v, hardAcknowledged);
        return parsed.ok ? { ok: true, value: parsed.options } : parsed;
      },
      DEFAULT_NFS_OPTIONS,
    );
    shareManagerNodeSelector = optional('shareManagerNodeSelector', parseNodeSelector, {});
    shareManagerTolerations = optional('shareManagerTolerations', parseTolerations, []);
    fastFailover = optional('fastFailover', (v) => parseBoolean('fastFailover', v), false);
  }

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    value: {
      numberOfReplicas,
      staleReplicaTimeoutSeconds,
      migratable,
      fsType,
      nfsOptions,
      shareManagerNodeSelector,
      shareManagerTolerations,
      fastFailover,
    },
  };
}

/**
 * The parameters map with every defaultable Tandem key made explicit (for the
 * mutating webhook). Only call on input that parsed ok. Keys already present
 * keep their value verbatim. Adds numberOfReplicas, staleReplicaTimeout,
 * migratable, fsType, and nfsOptions — but NOT fsType/nfsOptions when
 * migratable is "true" (a migratable class serves only raw Block volumes).
 */
export function withExplicitDefaults(parameters: Record<string, string> | undefined): Record<string, string> {
  const parsed = parseStorageClassParameters(parameters);
  if (!parsed.ok) {
    throw new Error(
      `withExplicitDefaults needs parameters that parse; they do not: ${parsed.errors.join(' ')}`,
    );
  }
  const result: Record<string, string> = { ...parameters };
  const add = (key: string, value: string) => {
    if (!Object.hasOwn(result, key)) result[key] = value;
  };
  const value = parsed.value;
  add('numberOfReplicas', String(value.numberOfReplicas));
  add('staleReplicaTimeout', DEFAULT_STALE_REPLICA_TIMEOUT);
  add('migratable', String(value.migratable));
  if (!value.migratable) {
    // Follows csi.storage.k8s.io/fstype when only that is given, so the two never disagree.
    add('fsType', value.fsType);
    add('nfsOptions', value.nfsOptions);
  }
  return result;
}
