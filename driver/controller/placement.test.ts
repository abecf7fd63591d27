import { status } from '@grpc/grpc-js';
import { CsiError } from '../csi/errors.js';
import {
  type CsiTopologyRequirement,
  formatBytes,
  type NodeInfo,
  PlacementError,
  placeReplicas,
} from './placement.js';

const GiB = 1024 ** 3;
const KEY = 'topology.csi.tandem.dev/node';
const ZONE = 'topology.kubernetes.io/zone';

function node(name: string, freeGiB: number, extra: Partial<NodeInfo> = {}): NodeInfo {
  return { name, freeBytes: freeGiB * GiB, schedulable: true, segments: { [KEY]: name }, ...extra };
}
const on = (name: string) => ({ segments: { [KEY]: name } });
const zone = (z: string) => ({ segments: { [ZONE]: z } });
const inZone = (name: string, freeGiB: number, z: string) =>
  node(name, freeGiB, { segments: { [KEY]: name, [ZONE]: z } });

const five = [node('a', 50), node('b', 40), node('c', 30), node('d', 20), node('e', 10)];

describe('placeReplicas', () => {
  const cases: [
    string,
    {
      replicas: number;
      nodes: NodeInfo[];
      size?: number;
      topology?: CsiTopologyRequirement | null;
      existing?: string[];
    },
    string[],
  ][] = [
    ['most free space first', { replicas: 3, nodes: five }, ['a', 'b', 'c']],
    ['one replica', { replicas: 1, nodes: five }, ['a']],
    ['all nodes', { replicas: 5, nodes: five }, ['a', 'b', 'c', 'd', 'e']],
    ['node order in the input does not matter', { replicas: 2, nodes: [...five].reverse() }, ['a', 'b']],
    [
      'ties broken by name',
      { replicas: 2, nodes: [node('z', 10), node('m', 10), node('b', 10)] },
      ['b', 'm'],
    ],
    [
      'unschedulable nodes skipped',
      { replicas: 2, nodes: [node('a', 50, { schedulable: false }), node('b', 40), node('c', 30)] },
      ['b', 'c'],
    ],
    ['nodes without room skipped', { replicas: 2, nodes: five, size: 35 * GiB }, ['a', 'b']],
    ['exactly enough room counts', { replicas: 1, nodes: [node('a', 10)], size: 10 * GiB }, ['a']],
    [
      'requisite limits the nodes',
      { replicas: 2, nodes: five, topology: { requisite: [on('c'), on('d'), on('e')], preferred: [] } },
      ['c', 'd'],
    ],
    [
      'first preferred comes first even with less space',
      { replicas: 3, nodes: five, topology: { requisite: [], preferred: [on('e')] } },
      ['e', 'a', 'b'],
    ],
    [
      'preferred order kept',
      { replicas: 3, nodes: five, topology: { requisite: [], preferred: [on('d'), on('e'), on('c')] } },
      ['d', 'e', 'c'],
    ],
    [
      'CSI spec example: requisite z2,z3,z4, preferred z4,z2',
      {
        replicas: 3,
        nodes: [
          inZone('n1', 90, 'z1'),
          inZone('n2', 10, 'z2'),
          inZone('n3', 50, 'z3'),
          inZone('n4', 5, 'z4'),
        ],
        topology: { requisite: [zone('z2'), zone('z3'), zone('z4')], preferred: [zone('z4'), zone('z2')] },
      },
      ['n4', 'n2', 'n3'],
    ],
    [
      'several nodes in one preferred term: most free first',
      {
        replicas: 3,
        nodes: [inZone('n1', 10, 'z1'), inZone('n2', 20, 'z1'), inZone('n3', 90, 'z2')],
        topology: { requisite: [], preferred: [zone('z1')] },
      },
      ['n2', 'n1', 'n3'],
    ],
    [
      'a term with several segments needs all of them',
      {
        replicas: 1,
        nodes: [inZone('n1', 90, 'z1'), inZone('n2', 10, 'z1')],
        topology: { requisite: [{ segments: { [ZONE]: 'z1', [KEY]: 'n2' } }], preferred: [] },
      },
      ['n2'],
    ],
    [
      'preferred outside requisite is ignored',
      { replicas: 1, nodes: five, topology: { requisite: [on('b'), on('c')], preferred: [on('a')] } },
      ['b'],
    ],
    [
      'a preferred node without room is passed over',
      { replicas: 2, nodes: five, size: 15 * GiB, topology: { requisite: [], preferred: [on('e')] } },
      ['a', 'b'],
    ],
    ['null topology', { replicas: 1, nodes: five, topology: null }, ['a']],
    [
      'nodes missing the topology key are outside the requisite',
      {
        replicas: 1,
        nodes: [node('a', 50, { segments: {} }), node('b', 10)],
        topology: { requisite: [{ segments: { [KEY]: 'a' } }, on('b')] },
      },
      ['b'],
    ],
    [
      'existing replicas kept first, even where the space is gone now',
      { replicas: 3, nodes: [...five.slice(0, 4), node('e', 0)], existing: ['e'] },
      ['e', 'a', 'b'],
    ],
    [
      'existing replicas kept even on unschedulable or unknown nodes',
      { replicas: 3, nodes: [node('a', 50, { schedulable: false }), node('b', 40)], existing: ['a', 'gone'] },
      ['a', 'gone', 'b'],
    ],
    [
      'a complete set is returned as it is',
      { replicas: 3, nodes: five, existing: ['c', 'e', 'd'] },
      ['c', 'e', 'd'],
    ],
    [
      'more existing than wanted: none dropped',
      { replicas: 2, nodes: five, existing: ['c', 'd', 'e'] },
      ['c', 'd', 'e'],
    ],
    ['duplicate existing entries count once', { replicas: 2, nodes: five, existing: ['c', 'c'] }, ['c', 'a']],
    [
      'a duplicated node holds one replica',
      { replicas: 2, nodes: [node('a', 50), node('a', 50), node('b', 1)] },
      ['a', 'b'],
    ],
  ];

  it.each(cases)('%s', (_name, input, expected) => {
    const result = placeReplicas({
      replicas: input.replicas,
      nodes: input.nodes,
      sizeBytes: input.size ?? GiB,
      topology: input.topology,
      existing: input.existing,
    });
    expect(result).toEqual(expected);
  });

  it('a retry with the first answer as existing gives the same answer', () => {
    const topology = { requisite: [], preferred: [on('d')] };
    const first = placeReplicas({ replicas: 3, nodes: five, sizeBytes: GiB, topology });
    for (let placed = 0; placed <= 3; placed++) {
      const again = placeReplicas({
        replicas: 3,
        nodes: five,
        sizeBytes: GiB,
        topology,
        existing: first.slice(0, placed),
      });
      expect(again).toEqual(first);
    }
  });

  it('never puts two replicas on one node', () => {
    const result = placeReplicas({ replicas: 5, nodes: five, sizeBytes: GiB, existing: ['b'] });
    expect(new Set(result).size).toBe(result.length);
  });

  const refusals: [string, Parameters<typeof placeReplicas>[0], RegExp[]][] = [
    [
      'too few nodes with room',
      {
        replicas: 3,
        nodes: [node('node-a', 4), node('node-b', 12), node('node-c', 11)],
        sizeBytes: 10 * GiB,
      },
      [
        /cannot place 3 replicas of 10 GiB/,
        /need 3 schedulable nodes with ≥ 10 GiB free, one replica per node/,
        /have 2: node-b \(12 GiB free\), node-c \(11 GiB free\)/,
        /not eligible: node-a \(4 GiB free\)/,
        /lower numberOfReplicas/,
      ],
    ],
    [
      'unschedulable and outside the topology named',
      {
        replicas: 2,
        nodes: [node('a', 50, { schedulable: false }), node('b', 50), node('c', 50)],
        sizeBytes: GiB,
        topology: { requisite: [on('a'), on('b')], preferred: [] },
      },
      [
        /in the requisite topology \(\{topology\.csi\.tandem\.dev\/node=a\} or \{topology\.csi\.tandem\.dev\/node=b\}\)/,
        /have 1: b \(50 GiB free\)/,
        /a \(not schedulable, 50 GiB free\)/,
        /c \(outside the requisite topology, 50 GiB free\)/,
      ],
    ],
    [
      'no nodes at all',
      { replicas: 1, nodes: [], sizeBytes: GiB },
      [/cannot place 1 replica of 1 GiB/, /need 1 schedulable node with/, /have 0 \(no nodes run/],
    ],
    [
      'topping up an existing set',
      { replicas: 3, nodes: [node('a', 1), node('b', 1)], sizeBytes: 2 * GiB, existing: ['x'] },
      [/1 of 3 replicas already placed \(x\)/, /need 2 more schedulable nodes/, /have 0; not eligible: a/],
    ],
    [
      'long lists are cut',
      {
        replicas: 3,
        nodes: Array.from({ length: 20 }, (_, i) => node(`n${String(i).padStart(2, '0')}`, 1)),
        sizeBytes: 2 * GiB,
      },
      [/n11 \(1 GiB free\), and 8 more\./],
    ],
  ];

  it.each(refusals)('refuses: %s', (_name, request, messages) => {
    let caught: unknown;
    try {
      placeReplicas(request);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PlacementError);
    expect(caught).toBeInstanceOf(CsiError);
    const error = caught as PlacementError;
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
    for (const message of messages) expect(error.message).toMatch(message);
  });

  it('the error says how many were needed and which nodes qualified', () => {
    expect(() =>
      placeReplicas({ replicas: 3, nodes: [node('a', 5), node('b', 1)], sizeBytes: 2 * GiB }),
    ).toThrow(expect.objectContaining({ needed: 3, eligible: ['a'] }));
  });

  it.each([0, -1, 1.5, Number.NaN])('a replica count of %p is a programming error', (replicas) => {
    expect(() => placeReplicas({ replicas, nodes: five, sizeBytes: GiB })).toThrow(/positive whole number/);
  });
});

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [4096, '4 KiB'],
    [512 * 1024 ** 2, '512 MiB'],
    [4 * GiB, '4 GiB'],
    [4.5 * GiB, '4.5 GiB'],
    [10 * GiB - 1, '9.9 GiB'],
    [3 * 1024 * GiB, '3 TiB'],
  ])('%p bytes is %p', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});
