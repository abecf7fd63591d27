import type { IncomingMessage } from 'node:http';
import { plainJson } from './review-endpoint.js';

const withHeaders = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

describe('plainJson: which admission requests the direct path reads (the rest go through express)', () => {
  it.each([
    ['application/json', true],
    ['application/json; charset=utf-8', true],
    ['Application/JSON; Charset="UTF-8"', true],
    ['application/json;charset=utf8', true],
    ['application/json; charset=latin-9', false],
    ['text/plain', false],
    ['application/json-patch+json', false],
  ])('Content-Type %s → %s', (type, expected) => {
    expect(plainJson(withHeaders({ 'content-type': type }))).toBe(expected);
  });

  it('leaves requests without a Content-Type, or with a Content-Encoding, to express', () => {
    expect(plainJson(withHeaders({}))).toBe(false);
    expect(plainJson(withHeaders({ 'content-type': 'application/json', 'content-encoding': 'gzip' }))).toBe(
      false,
    );
    expect(
      plainJson(withHeaders({ 'content-type': 'application/json', 'content-encoding': 'identity' })),
    ).toBe(true);
  });
});
