import { labelKeyProblems, labelValueProblems } from './label-syntax.js';

describe('labelKeyProblems', () => {
  it.each([
    'a',
    'Z9',
    'app',
    'node-role_x.y',
    'kubernetes.io/os',
    'node-role.kubernetes.io/storage',
    'topology.kubernetes.io/zone',
    'a/b',
    '1.2.3/x',
    `${'a'.repeat(253)}/x`,
    'x'.repeat(63),
    `example.com/${'x'.repeat(63)}`,
  ])('accepts %p', (key) => expect(labelKeyProblems(key)).toEqual([]));

  it.each([
    ['', /key is empty.*\[prefix\/\]|optionally after "prefix\/"/],
    ['-a', /key "-a" is malformed; allowed: at most 63 characters/],
    ['a-', /malformed.*starting and ending with a letter or digit/],
    ['_a', /malformed/],
    ['a b', /malformed/],
    ['a:b', /malformed/],
    ['é', /malformed/],
    ['x'.repeat(64), /key is 64 characters long; allowed: at most 63/],
    ['a/b/c', /more than one '\/'/],
    ['/x', /empty prefix before '\/'.*DNS subdomain/],
    ['example.com/', /empty name after '\/'/],
    ['Example.com/x', /key prefix "Example.com" is malformed; it must be a DNS subdomain/],
    ['exa_mple.com/x', /key prefix "exa_mple.com" is malformed/],
    ['example..com/x', /key prefix "example..com" is malformed/],
    ['-example.com/x', /key prefix "-example.com" is malformed/],
    [`${'a'.repeat(254)}/x`, /key prefix is 254 characters long; it must be a DNS subdomain of at most 253/],
    [`example.com/${'x'.repeat(64)}`, /key name is 64 characters long/],
    ['example.com/-x', /key name "-x" is malformed/],
  ])('refuses %p', (key, message) => {
    const problems = labelKeyProblems(key);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.join('\n')).toMatch(message);
  });

  it('reports a bad prefix and a bad name together', () => {
    expect(labelKeyProblems('Bad/-bad')).toHaveLength(2);
  });
});

describe('labelValueProblems', () => {
  it.each(['', 'a', 'linux', 'zone-a', 'A_b.c-9', 'v'.repeat(63)])('accepts %p', (value) =>
    expect(labelValueProblems(value)).toEqual([]),
  );

  it.each([
    ['-a', /value "-a" is malformed; allowed: .*\(or empty\)/],
    ['a.', /malformed/],
    ['a b', /malformed/],
    [' a', /malformed/],
    ['a/b', /malformed/],
    ['a:b', /malformed/],
    ['v'.repeat(64), /value is 64 characters long; allowed: at most 63 characters.*\(or empty\)/],
  ])('refuses %p', (value, message) => expect(labelValueProblems(value).join('\n')).toMatch(message));
});
