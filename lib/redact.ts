/**
 * Hides secret values in text that is about to be logged or put in an error
 * message (command lines, stderr of a failed command). Values shorter than 4
 * characters are not replaced: they would blank out unrelated text and are
 * not secrets anyone should use.
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  }
  return out;
}

/** Flags whose next argument (or `--flag=value` value) is secret by name. */
const SECRET_FLAG = /^--?[\w-]*(password|secret|token|credential|passphrase)[\w-]*$/i;

/** A printable command line with secret values and secret-flag values hidden. */
export function redactCommandLine(
  command: string,
  args: readonly string[],
  secrets: readonly string[],
): string {
  const shown: string[] = [command];
  let hideNext = false;
  for (const arg of args) {
    if (hideNext) {
      shown.push('[redacted]');
      hideNext = false;
      continue;
    }
    const eq = arg.indexOf('=');
    if (arg.startsWith('-') && eq > 0 && SECRET_FLAG.test(arg.slice(0, eq))) {
      shown.push(`${arg.slice(0, eq)}=[redacted]`);
      continue;
    }
    if (SECRET_FLAG.test(arg)) hideNext = true;
    shown.push(quote(redact(arg, secrets)));
  }
  return shown.join(' ');
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}
