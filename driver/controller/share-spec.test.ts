import { allowedTopologyNodes } from './share-spec.js';

const KEY = 'topology.csi.tandem.dev/node';

describe("the nodes a class's allowedTopologies admit", () => {
  test('none set: any node', () => {
    expect(allowedTopologyNodes(undefined)).toBeUndefined();
    expect(allowedTopologyNodes([])).toBeUndefined();
  });

  test('terms are ORed, the expressions of one term ANDed', () => {
    expect(
      allowedTopologyNodes([
        { matchLabelExpressions: [{ key: KEY, values: ['n3', 'n1'] }] },
        {
          matchLabelExpressions: [
            { key: KEY, values: ['n2', 'n4'] },
            { key: KEY, values: ['n4', 'n5'] },
          ],
        },
      ]),
    ).toEqual(['n1', 'n3', 'n4']);
  });

  test('contradicting expressions, or a key no Tandem node reports, admit nothing', () => {
    expect(
      allowedTopologyNodes([
        {
          matchLabelExpressions: [
            { key: KEY, values: ['n1'] },
            { key: KEY, values: ['n2'] },
          ],
        },
        { matchLabelExpressions: [{ key: 'topology.kubernetes.io/zone', values: ['a'] }] },
      ]),
    ).toEqual([]);
  });
});
