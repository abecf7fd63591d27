import { isIP } from 'node:net';
import { InvalidArgumentError } from 'commander';

/**
 * Value parsers for flags and environment variables. Each throws
 * InvalidArgumentError with what was wrong and what is allowed, which the CLI
 * turns into a non-zero exit naming the flag.
 */

export function integerIn(min: number, max: number): (value: string) => number {
  return (value) => {
    if (!/^-?\d+$/.test(value.trim())) {
      throw new InvalidArgumentError(`"${value}" is not a whole number; allowed: ${min} to ${max}.`);
    }
    const n = Number(value);
    if (n < min || n > max)
      throw new InvalidArgumentError(`${n} is out of range; allowed: ${min} to ${max}.`);
    return n;
  };
}

export const port = integerIn(1, 65535);
/** A port, or 0 for "pick a free one". */
export const portOrZero = integerIn(0, 65535);

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Parses "500ms", "30s", "5m", "1h" into milliseconds. */
export function parseDurationMs(value: string): number {
  const match = DURATION.exec(value.trim());
  const unit = match?.[2];
  if (!match?.[1] || !unit) {
    throw new InvalidArgumentError(
      `"${value}" is not a duration; use a number with ms, s, m or h (e.g. 30s, 5m).`,
    );
  }
  return Math.round(Number(match[1]) * (UNIT_MS[unit] ?? 1));
}

export function durationIn(minMs: number, maxMs: number): (value: string) => number {
  return (value) => {
    const ms = parseDurationMs(value);
    if (ms < minMs || ms > maxMs) {
      throw new InvalidArgumentError(
        `${value} is out of range; allowed: ${formatMs(minMs)} to ${formatMs(maxMs)}.`,
      );
    }
    return ms;
  };
}

export function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

export function oneOf<T extends string>(allowed: readonly T[]): (value: string) => T {
  return (value) => {
    const found = allowed.find((a) => a === value);
    if (found === undefined)
      throw new InvalidArgumentError(`"${value}" is not allowed; use one of: ${allowed.join(', ')}.`);
    return found;
  };
}

export interface HostPort {
  host: string;
  port: number;
}

/** "host:port" or "[v6]:port"; the host is an IP address or a DNS name. */
export function parseHostPort(value: string): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d+)$/.exec(value.trim());
  const host = match?.[1] ?? match?.[2];
  if (!match?.[3] || !host)
    throw new InvalidArgumentError(`"${value}" is not host:port (e.g. 127.0.0.1:9500).`);
  if (match[1] && isIP(host) !== 6)
    throw new InvalidArgumentError(`"${host}" in "${value}" is not an IPv6 address.`);
  if (!match[1] && isIP(host) === 0 && !isDnsName(host)) {
    throw new InvalidArgumentError(`"${host}" in "${value}" is neither an IP address nor a DNS name.`);
  }
  return { host, port: port(match[3]) };
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function isDnsName(value: string): boolean {
  return value.length <= 253 && value.split('.').every((label) => DNS_LABEL.test(label));
}

/** A Kubernetes node name (DNS subdomain, RFC 1123). */
export function nodeName(value: string): string {
  if (!isDnsName(value)) {
    throw new InvalidArgumentError(
      `"${value}" is not a valid node name; use lower-case letters, digits, '-' and '.', at most 253 characters.`,
    );
  }
  return value;
}

/** A unix socket path or unix:// URL, as CSI sidecars pass it. */
export function unixSocketPath(value: string): string {
  const path = value.startsWith('unix://') ? value.slice('unix://'.length) : value;
  if (!path.startsWith('/'))
    throw new InvalidArgumentError(
      `"${value}" is not an absolute unix socket path (e.g. unix:///csi/csi.sock).`,
    );
  if (Buffer.byteLength(path) > 107)
    throw new InvalidArgumentError(`"${value}" is longer than a unix socket path may be (107 bytes).`);
  return path;
}

const SIZE_UNITS: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };

/** A byte size: an integer with an optional binary suffix (Ki, Mi, Gi, Ti), a multiple of 4096. */
export function parseSize(value: string): number {
  const match = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(value.trim());
  const bytes = match === null ? Number.NaN : Number(match[1]) * (SIZE_UNITS[match[2] ?? ''] ?? Number.NaN);
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % 4096 !== 0) {
    throw new InvalidArgumentError(
      `"${value}" is not a size: give a positive multiple of 4096 bytes, e.g. 1Gi, 512Mi or 1048576.`,
    );
  }
  return bytes;
}
