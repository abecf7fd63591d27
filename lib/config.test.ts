import { InvalidArgumentError } from 'commander';
import {
  durationIn,
  integerIn,
  isDnsName,
  nodeName,
  oneOf,
  parseDurationMs,
  parseHostPort,
  unixSocketPath,
} from './config.js';

const rejects = (fn: () => unknown, message: RegExp) => {
  expect(fn).toThrow(InvalidArgumentError);
  expect(fn).toThrow(message);
};

describe('integerIn', () => {
  const replicas = integerIn(1, 5);
  it.each([
    ['1', 1],
    ['5', 5],
    [' 3 ', 3],
  ])('accepts %p', (input, expected) => expect(replicas(input)).toBe(expected));
  it.each([
    ['0', /out of range; allowed: 1 to 5/],
    ['6', /out of range/],
    ['2.5', /not a whole number/],
    ['three', /not a whole number/],
    ['', /not a whole number/],
    ['1e3', /not a whole number/],
  ])('refuses %p', (input, message) => rejects(() => replicas(input), message));
});

describe('durations', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['1.5s', 1_500],
    ['5m', 300_000],
    ['2h', 7_200_000],
  ])('parses %p', (input, ms) => expect(parseDurationMs(input)).toBe(ms));
  it.each(['30', '5 minutes', '-1s', 's', '1d'])('refuses %p with an example of the format', (input) =>
    rejects(() => parseDurationMs(input), /use a number with ms, s, m or h/),
  );
  it('checks the range and names it', () => {
    rejects(() => durationIn(60_000, 3_600_000)('30s'), /allowed: 1m to 1h/);
    expect(durationIn(60_000, 3_600_000)('10m')).toBe(600_000);
  });
});

describe('parseHostPort', () => {
  it.each([
    ['127.0.0.1:9500', { host: '127.0.0.1', port: 9500 }],
    ['0.0.0.0:1', { host: '0.0.0.0', port: 1 }],
    ['[::1]:443', { host: '::1', port: 443 }],
    ['tandem-webhook.tandem-system.svc:9443', { host: 'tandem-webhook.tandem-system.svc', port: 9443 }],
  ])('parses %p', (input, expected) => expect(parseHostPort(input)).toEqual(expected));
  it.each([
    ['9500', /not host:port/],
    ['host:', /not host:port/],
    ['host:99999', /out of range/],
    ['Bad_Host:80', /neither an IP address nor a DNS name/],
    ['[nothex]:80', /not host:port/],
    ['[1.2.3.4]:80', /not an IPv6 address/],
  ])('refuses %p', (input, message) => rejects(() => parseHostPort(input), message));
});

describe('names and paths', () => {
  it('accepts node names that are DNS subdomains', () => {
    expect(nodeName('worker-1.example')).toBe('worker-1.example');
    expect(isDnsName('a'.repeat(63))).toBe(true);
    expect(isDnsName('a'.repeat(64))).toBe(false);
  });
  it.each(['Worker', 'node_1', '-node', 'node-', ''])('refuses node name %p', (name) =>
    rejects(() => nodeName(name), /not a valid node name/),
  );
  it('takes unix:// URLs and bare absolute paths for sockets', () => {
    expect(unixSocketPath('unix:///csi/csi.sock')).toBe('/csi/csi.sock');
    expect(unixSocketPath('/run/x.sock')).toBe('/run/x.sock');
    rejects(() => unixSocketPath('csi.sock'), /absolute unix socket path/);
    rejects(() => unixSocketPath(`/${'x'.repeat(120)}`), /longer than a unix socket path/);
  });
  it('lists the allowed values of an enumeration', () => {
    expect(oneOf(['ext4', 'xfs'] as const)('xfs')).toBe('xfs');
    rejects(() => oneOf(['ext4', 'xfs'] as const)('btrfs'), /use one of: ext4, xfs/);
  });
});
