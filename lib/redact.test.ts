import { redact, redactCommandLine } from './redact.js';

describe('redact', () => {
  it('hides every occurrence of every secret', () => {
    expect(redact('token=s3cr3t; again s3cr3t', ['s3cr3t'])).toBe('token=[redacted]; again [redacted]');
  });
  it('ignores values too short to be secrets', () => {
    expect(redact('a b c', ['a'])).toBe('a b c');
  });
});

describe('redactCommandLine', () => {
  it('hides values of secret-looking flags in both forms', () => {
    expect(
      redactCommandLine('tool', ['--password', 'hunter22', '--volume-secret=abcd1234', '--size', '10'], []),
    ).toBe('tool --password [redacted] --volume-secret=[redacted] --size 10');
  });
  it('hides known secret values anywhere and quotes arguments with spaces', () => {
    expect(redactCommandLine('nbd', ['--uri', 'nbd://x?cred=abcdef12', 'a b'], ['abcdef12'])).toBe(
      "nbd --uri 'nbd://x?cred=[redacted]' 'a b'",
    );
  });
});
