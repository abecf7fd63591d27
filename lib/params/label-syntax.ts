/**
 * Kubernetes label key and value syntax, as the API server checks it
 * (apimachinery's IsQualifiedName and IsValidLabelValue). StorageClass
 * parameters that end up in a share manager pod's nodeSelector or tolerations
 * are checked here, at admission, so a typo is refused on the class instead of
 * surfacing later as a share manager pod the API server will not create.
 *
 * Each check returns a list of problems, empty when the input is valid. Every
 * problem says what is wrong and what is allowed; the caller adds which
 * parameter and item it came from.
 */

const NAME_MAX = 63;
const PREFIX_MAX = 253;
/** Alphanumeric at both ends, '-', '_' and '.' inside; either case. */
const NAME = /^[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/**
 * A DNS-1123 subdomain: lower-case alphanumeric labels with inner '-', joined
 * by '.'. Like the API server, only the total length is limited here.
 */
const DNS_SUBDOMAIN = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;

const NAME_RULE = `at most ${NAME_MAX} characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit`;
const PREFIX_RULE = `a DNS subdomain of at most ${PREFIX_MAX} characters: lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit (e.g. "example.com")`;

/** Problems with the name part of a key, or with a whole label value. */
function nameProblems(what: string, name: string): string[] {
  if (name.length > NAME_MAX) return [`${what} is ${name.length} characters long; allowed: ${NAME_RULE}`];
  if (!NAME.test(name)) return [`${what} "${name}" is malformed; allowed: ${NAME_RULE}`];
  return [];
}

/** A label key: an optional DNS subdomain prefix and '/', then a name. */
export function labelKeyProblems(key: string): string[] {
  if (key === '')
    return [`the key is empty; a label key is a name (${NAME_RULE}), optionally after "prefix/"`];
  const parts = key.split('/');
  if (parts.length > 2) {
    return [`the key "${key}" has more than one '/'; a label key is [prefix/]name`];
  }
  const [first = '', second] = parts;
  if (second === undefined) return nameProblems('the key', first);

  const problems: string[] = [];
  if (first === '') {
    problems.push(`the key "${key}" has an empty prefix before '/'; the prefix must be ${PREFIX_RULE}`);
  } else if (first.length > PREFIX_MAX) {
    problems.push(`the key prefix is ${first.length} characters long; it must be ${PREFIX_RULE}`);
  } else if (!DNS_SUBDOMAIN.test(first)) {
    problems.push(`the key prefix "${first}" is malformed; it must be ${PREFIX_RULE}`);
  }
  if (second === '')
    problems.push(`the key "${key}" has an empty name after '/'; the name must be ${NAME_RULE}`);
  else problems.push(...nameProblems('the key name', second));
  return problems;
}

/** A label value: empty, or a name. */
export function labelValueProblems(value: string): string[] {
  if (value === '') return [];
  return nameProblems('the value', value).map((p) => `${p} (or empty)`);
}
