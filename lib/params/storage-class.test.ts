import {
  DEFAULT_NFS_OPTIONS,
  type ParseResult,
  parseStorageClassParameters,
  STORAGE_CLASS_PARAMETER_KEYS,
  type TandemClassParameters,
  withExplicitDefaults,
} from './storage-class.js';

/** The CSI operations external-provisioner reads a secret name/namespace pair for. */
const SECRET_STAGES = [
  'provisioner',
  'controller-publish',
  'node-stage',
  'node-publish',
  'controller-expand',
  'node-expand',
];

const DEFAULTS: TandemClassParameters = {
  numberOfReplicas: 3,
  staleReplicaTimeoutSeconds: 48 * 3600,
  migratable: false,
  fsType: 'ext4',
  nfsOptions: 'vers=4.1,noresvport,softerr,timeo=600,retrans=5',
  shareManagerNodeSelector: {},
  shareManagerTolerations: [],
  fastFailover: false,
};

const parse = (parameters: Record<string, string> | undefined): TandemClassParameters => {
  const result: ParseResult = parseStorageClassParameters(parameters);
  if (!result.ok) throw new Error(`expected to parse, got: ${result.errors.join(' | ')}`);
  return result.value;
};

const errorsOf = (parameters: Record<string, string>): string[] => {
  const result = parseStorageClassParameters(parameters);
  if (result.ok) throw new Error(`expected ${JSON.stringify(parameters)} to be refused`);
  return result.errors;
};

/** Exactly one error, matching `message`. */
const refusesWith = (parameters: Record<string, string>, message: RegExp) => {
  const errors = errorsOf(parameters);
  expect(errors).toEqual([expect.stringMatching(message)]);
};

describe('STORAGE_CLASS_PARAMETER_KEYS', () => {
  it('lists the Tandem keys and the keys external-provisioner interprets', () => {
    expect(STORAGE_CLASS_PARAMETER_KEYS).toEqual([
      'numberOfReplicas',
      'staleReplicaTimeout',
      'migratable',
      'fsType',
      'nfsOptions',
      'nfsHardMountAcknowledged',
      'shareManagerNodeSelector',
      'shareManagerTolerations',
      'fastFailover',
      'csi.storage.k8s.io/fstype',
      'csi.storage.k8s.io/provisioner-secret-name',
      'csi.storage.k8s.io/provisioner-secret-namespace',
      'csi.storage.k8s.io/controller-publish-secret-name',
      'csi.storage.k8s.io/controller-publish-secret-namespace',
      'csi.storage.k8s.io/node-stage-secret-name',
      'csi.storage.k8s.io/node-stage-secret-namespace',
      'csi.storage.k8s.io/node-publish-secret-name',
      'csi.storage.k8s.io/node-publish-secret-namespace',
      'csi.storage.k8s.io/controller-expand-secret-name',
      'csi.storage.k8s.io/controller-expand-secret-namespace',
      'csi.storage.k8s.io/node-expand-secret-name',
      'csi.storage.k8s.io/node-expand-secret-namespace',
    ]);
    expect(Object.isFrozen(STORAGE_CLASS_PARAMETER_KEYS)).toBe(true);
  });

  it('re-exports the default NFS options', () => {
    expect(DEFAULT_NFS_OPTIONS).toBe(DEFAULTS.nfsOptions);
  });
});

describe('parseStorageClassParameters: defaults', () => {
  it.each([
    ['undefined', undefined],
    ['an empty map', {}],
  ])('gives every default for %s', (_, parameters) => expect(parse(parameters)).toEqual(DEFAULTS));

  it('gives the defaults of the keys not given', () => {
    expect(parse({ numberOfReplicas: '2' })).toEqual({ ...DEFAULTS, numberOfReplicas: 2 });
  });

  it('gives the defaults for a migratable class too', () => {
    expect(parse({ migratable: 'true' })).toEqual({ ...DEFAULTS, migratable: true });
  });
});

describe('parseStorageClassParameters: legal values', () => {
  it.each([
    [{ numberOfReplicas: '1' }, { numberOfReplicas: 1 }],
    [{ numberOfReplicas: '3' }, { numberOfReplicas: 3 }],
    [{ numberOfReplicas: '5' }, { numberOfReplicas: 5 }],
    [{ staleReplicaTimeout: '60s' }, { staleReplicaTimeoutSeconds: 60 }],
    [{ staleReplicaTimeout: '90s' }, { staleReplicaTimeoutSeconds: 90 }],
    [{ staleReplicaTimeout: '1m' }, { staleReplicaTimeoutSeconds: 60 }],
    [{ staleReplicaTimeout: '30m' }, { staleReplicaTimeoutSeconds: 1800 }],
    [{ staleReplicaTimeout: '48h' }, { staleReplicaTimeoutSeconds: 172_800 }],
    [{ staleReplicaTimeout: '168h' }, { staleReplicaTimeoutSeconds: 604_800 }],
    [{ staleReplicaTimeout: '10080m' }, { staleReplicaTimeoutSeconds: 604_800 }],
    [{ staleReplicaTimeout: '604800s' }, { staleReplicaTimeoutSeconds: 604_800 }],
    [{ migratable: 'false' }, { migratable: false }],
    [{ migratable: 'true' }, { migratable: true }],
    [{ fsType: 'ext4' }, { fsType: 'ext4' }],
    [{ fsType: 'xfs' }, { fsType: 'xfs' }],
    [{ 'csi.storage.k8s.io/fstype': 'xfs' }, { fsType: 'xfs' }],
    [{ 'csi.storage.k8s.io/fstype': 'ext4' }, { fsType: 'ext4' }],
    [{ fsType: 'xfs', 'csi.storage.k8s.io/fstype': 'xfs' }, { fsType: 'xfs' }],
    [{ nfsOptions: 'vers=4.2,softerr,timeo=300' }, { nfsOptions: 'vers=4.2,softerr,timeo=300' }],
    [{ nfsOptions: 'nfsvers=4,minorversion=1,tcp' }, { nfsOptions: 'vers=4.1,proto=tcp' }],
    [{ nfsOptions: 'vers=4.1,hard', nfsHardMountAcknowledged: 'true' }, { nfsOptions: 'vers=4.1,hard' }],
    [{ nfsHardMountAcknowledged: 'true' }, {}],
    [{ nfsHardMountAcknowledged: 'false' }, {}],
    [
      { shareManagerNodeSelector: 'kubernetes.io/os:linux' },
      { shareManagerNodeSelector: { 'kubernetes.io/os': 'linux' } },
    ],
    [
      { shareManagerNodeSelector: 'kubernetes.io/os:linux;topology.kubernetes.io/zone:zone-a;storage:' },
      {
        shareManagerNodeSelector: {
          'kubernetes.io/os': 'linux',
          'topology.kubernetes.io/zone': 'zone-a',
          storage: '',
        },
      },
    ],
    [{ fastFailover: 'true' }, { fastFailover: true }],
    [{ fastFailover: 'false' }, {}],
    [
      { shareManagerTolerations: 'dedicated=storage:NoSchedule' },
      {
        shareManagerTolerations: [
          { key: 'dedicated', operator: 'Equal', value: 'storage', effect: 'NoSchedule' },
        ],
      },
    ],
    [
      {
        shareManagerTolerations:
          'node.kubernetes.io/unreachable:NoExecute;example.com/gpu=:PreferNoSchedule;dedicated:NoSchedule',
      },
      {
        shareManagerTolerations: [
          { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' },
          { key: 'example.com/gpu', operator: 'Equal', value: '', effect: 'PreferNoSchedule' },
          { key: 'dedicated', operator: 'Exists', effect: 'NoSchedule' },
        ],
      },
    ],
    [
      {
        'csi.storage.k8s.io/provisioner-secret-name': 's',
        'csi.storage.k8s.io/provisioner-secret-namespace': 'ns',
      },
      {},
    ],
    [
      {
        'csi.storage.k8s.io/node-stage-secret-name': `\${pvc.name}`,
        'csi.storage.k8s.io/node-stage-secret-namespace': `\${pvc.namespace}`,
      },
      {},
    ],
  ])('accepts %p', (parameters, expected) => expect(parse(parameters)).toEqual({ ...DEFAULTS, ...expected }));

  it.each(SECRET_STAGES)('accepts the %s secret pair', (stage) =>
    expect(
      parse({
        [`csi.storage.k8s.io/${stage}-secret-name`]: 'tandem-secret',
        [`csi.storage.k8s.io/${stage}-secret-namespace`]: 'tandem-system',
      }),
    ).toEqual(DEFAULTS),
  );

  it('accepts every Tandem key at once', () => {
    expect(
      parse({
        numberOfReplicas: '2',
        staleReplicaTimeout: '30m',
        migratable: 'false',
        fsType: 'xfs',
        'csi.storage.k8s.io/fstype': 'xfs',
        nfsOptions: 'vers=4.2,hard,timeo=600',
        nfsHardMountAcknowledged: 'true',
        shareManagerNodeSelector: 'role:storage',
        shareManagerTolerations: 'role=storage:NoSchedule',
        fastFailover: 'true',
      }),
    ).toEqual({
      numberOfReplicas: 2,
      staleReplicaTimeoutSeconds: 1800,
      migratable: false,
      fsType: 'xfs',
      nfsOptions: 'vers=4.2,hard,timeo=600',
      shareManagerNodeSelector: { role: 'storage' },
      shareManagerTolerations: [{ key: 'role', operator: 'Equal', value: 'storage', effect: 'NoSchedule' }],
      fastFailover: true,
    });
  });

  it('accepts a migratable class with the keys that apply to it', () => {
    expect(parse({ migratable: 'true', numberOfReplicas: '2', staleReplicaTimeout: '1h' })).toEqual({
      ...DEFAULTS,
      migratable: true,
      numberOfReplicas: 2,
      staleReplicaTimeoutSeconds: 3600,
    });
  });

  it('accepts a node selector key that names an Object.prototype property', () => {
    const value = parse({ shareManagerNodeSelector: 'constructor:x;toString:y' });
    expect(value.shareManagerNodeSelector).toEqual({ constructor: 'x', toString: 'y' });
  });
});

describe('parseStorageClassParameters: unknown keys', () => {
  it.each([
    [
      'numberofreplicas',
      /^numberofreplicas: is not a parameter of a Tandem StorageClass; did you mean "numberOfReplicas"\?/,
    ],
    [
      'replicas',
      /^replicas: is not a parameter.*allowed: numberOfReplicas, staleReplicaTimeout, migratable, fsType/,
    ],
    ['numberOfReplica', /did you mean "numberOfReplicas"/],
    ['staleReplicaTimeOut', /did you mean "staleReplicaTimeout"/],
    ['migrateable', /did you mean "migratable"/],
    ['fstype', /did you mean "fsType"/],
    ['nfsOption', /did you mean "nfsOptions"/],
    ['nfsHardMountAcknowledge', /did you mean "nfsHardMountAcknowledged"/],
    ['shareManagerNodeSelectors', /did you mean "shareManagerNodeSelector"/],
    ['shareManagerToleration', /did you mean "shareManagerTolerations"/],
    ['csi.storage.k8s.io/fsType', /did you mean "csi.storage.k8s.io\/fstype"/],
    ['csi.storage.k8s.io/node-stage-secret-nam', /did you mean "csi.storage.k8s.io\/node-stage-secret-name"/],
    ['csi.storage.k8s.io/nodestage-secret-name', /did you mean "csi.storage.k8s.io\/node-stage-secret-name"/],
    ['dataLocality', /allowed: numberOfReplicas/],
    ['', /is not a parameter.*allowed/],
    ['__proto__', /is not a parameter/],
  ])('refuses %p', (key, message) => refusesWith({ [key]: 'x' }, message));

  it('refuses a key that only differs by surrounding space', () => {
    refusesWith({ ' migratable': 'true' }, /did you mean "migratable"/);
  });
});

describe('parseStorageClassParameters: illegal values', () => {
  it.each([
    [
      '0',
      /^numberOfReplicas: 0 is out of range; allowed: a whole number from 1 to 5, in plain digits \(default 3\)$/,
    ],
    ['6', /6 is out of range; allowed: a whole number from 1 to 5/],
    ['-1', /"-1" is not a whole number/],
    ['3.0', /"3.0" is not a whole number; allowed: a whole number from 1 to 5/],
    ['three', /"three" is not a whole number/],
    ['', /"" is not a whole number/],
    [' 3', /" 3" is not a whole number/],
    ['3 ', /not a whole number/],
    ['+3', /not a whole number/],
    ['03', /"03" has a leading zero; allowed: a whole number from 1 to 5/],
    ['1e0', /not a whole number/],
  ])('refuses numberOfReplicas %p', (value, message) => refusesWith({ numberOfReplicas: value }, message));

  it.each([
    [
      '2880',
      /^staleReplicaTimeout: "2880" has no unit \(write e.g. "48h", not "2880"\); allowed: a whole number with the unit s, m or h, from 1m to 168h \(default 48h\)$/,
    ],
    ['0', /has no unit/],
    ['59s', /"59s" is out of range; allowed: .*from 1m to 168h/],
    ['0m', /out of range/],
    ['169h', /"169h" is out of range/],
    ['604801s', /out of range/],
    ['10081m', /out of range/],
    ['2d', /"2d" uses days, which are not a unit here \(write "48h"\)/],
    ['7d', /write "168h"/],
    ['1.5h', /"1.5h" is not a duration; allowed: a whole number with the unit s, m or h/],
    ['1h30m', /is not a duration/],
    ['48H', /is not a duration/],
    ['48 h', /is not a duration/],
    [' 48h', /is not a duration/],
    ['h', /is not a duration/],
    ['-1h', /is not a duration/],
    ['500ms', /is not a duration/],
    ['', /is not a duration/],
    ['048h', /"048h" has a leading zero/],
  ])('refuses staleReplicaTimeout %p', (value, message) =>
    refusesWith({ staleReplicaTimeout: value }, message),
  );

  it.each(['True', 'TRUE', 'yes', 'no', '1', '0', '', ' true', 'true ', 'on'])(
    'refuses the boolean %p for migratable, nfsHardMountAcknowledged and fastFailover',
    (value) => {
      const expected = (key: string) =>
        new RegExp(
          `^${key}: "${value}" is not allowed; use exactly "true" or "false" \\(lower case, no spaces\\)$`,
        );
      refusesWith({ migratable: value }, expected('migratable'));
      refusesWith({ nfsHardMountAcknowledged: value }, expected('nfsHardMountAcknowledged'));
      refusesWith({ fastFailover: value }, expected('fastFailover'));
    },
  );

  it.each(['ext3', 'XFS', 'Ext4', 'btrfs', '', ' ext4'])('refuses the filesystem %p', (value) => {
    refusesWith({ fsType: value }, /^fsType: ".*" is not supported; allowed: ext4 or xfs \(default ext4\)$/);
    refusesWith(
      { 'csi.storage.k8s.io/fstype': value },
      /^csi.storage.k8s.io\/fstype: ".*" is not supported; allowed: ext4 or xfs/,
    );
  });

  it('refuses fsType that disagrees with csi.storage.k8s.io/fstype', () => {
    refusesWith(
      { fsType: 'ext4', 'csi.storage.k8s.io/fstype': 'xfs' },
      /^fsType: "ext4" disagrees with csi.storage.k8s.io\/fstype "xfs"; allowed: the same filesystem in both, or only one of them$/,
    );
  });

  it('passes nfsOptions problems through, each naming the parameter', () => {
    expect(errorsOf({ nfsOptions: 'vers=3,udp' })).toEqual([
      expect.stringMatching(/^nfsOptions: "vers=3" asks for NFSv3/),
      expect.stringMatching(/^nfsOptions: "udp" asks for UDP/),
    ]);
  });

  it.each([
    [
      { nfsOptions: 'hard' },
      /^nfsOptions: "hard" makes client pods block forever.*nfsHardMountAcknowledged: "true"/,
    ],
    [{ nfsOptions: 'hard', nfsHardMountAcknowledged: 'false' }, /nfsHardMountAcknowledged: "true"/],
  ])('refuses hard without the acknowledgement: %p', (parameters, message) =>
    refusesWith(parameters, message),
  );

  it('refuses an invalid acknowledgement and the hard mount it was meant for', () => {
    expect(errorsOf({ nfsOptions: 'hard', nfsHardMountAcknowledged: 'yes' })).toEqual([
      expect.stringMatching(/^nfsHardMountAcknowledged: "yes" is not allowed/),
      expect.stringMatching(/^nfsOptions: "hard" makes client pods block forever/),
    ]);
  });

  it.each([
    [
      '',
      /^shareManagerNodeSelector: is empty; leave the parameter out for none, or allowed: items separated by single ';'/,
    ],
    ['os:linux;', /^shareManagerNodeSelector: item 2 is empty \(a leading, trailing or doubled ';'\)/],
    [';os:linux', /item 1 is empty/],
    ['a:b;;c:d', /item 2 is empty/],
    [
      'os=linux',
      /^shareManagerNodeSelector: "os=linux" is not key:value \(use ':' between key and value, not '='\); allowed: e.g. "kubernetes.io\/os:linux/,
    ],
    ['linux', /"linux" is not key:value; allowed/],
    [':linux', /in ":linux", the key is empty/],
    ['Foo Bar:x', /in "Foo Bar:x", the key "Foo Bar" is malformed; allowed: at most 63 characters/],
    ['-os:linux', /the key "-os" is malformed/],
    ['Example.com/os:linux', /the key prefix "Example.com" is malformed; it must be a DNS subdomain/],
    ['a/b/c:x', /more than one '\/'/],
    [`${'k'.repeat(64)}:x`, /the key is 64 characters long/],
    ['os:Linux OS', /the value "Linux OS" is malformed; allowed: .* \(or empty\)/],
    ['os: linux', /the value " linux" is malformed/],
    ['os:linux-', /the value "linux-" is malformed/],
    ['zone:a:b', /the value "a:b" is malformed/],
    [`os:${'v'.repeat(64)}`, /the value is 64 characters long/],
    [
      'os:linux;os:windows',
      /^shareManagerNodeSelector: the key "os" is given more than once; allowed: one value per key$/,
    ],
  ])('refuses the node selector %p', (value, message) =>
    refusesWith({ shareManagerNodeSelector: value }, message),
  );

  it('reports every node selector problem at once', () => {
    expect(errorsOf({ shareManagerNodeSelector: 'a=b;;-x:y;ok:v;ok:w;' })).toEqual([
      expect.stringMatching(/item 2 is empty/),
      expect.stringMatching(/item 6 is empty/),
      expect.stringMatching(/"a=b" is not key:value/),
      expect.stringMatching(/the key "-x" is malformed/),
      expect.stringMatching(/the key "ok" is given more than once/),
    ]);
  });

  it.each([
    ['', /^shareManagerTolerations: is empty; leave the parameter out for none/],
    ['a:NoSchedule;', /^shareManagerTolerations: item 2 is empty/],
    [';a:NoSchedule', /item 1 is empty/],
    [
      'dedicated=storage',
      /^shareManagerTolerations: "dedicated=storage" has no effect; allowed: key=value:Effect or key:Effect, with Effect one of NoSchedule, PreferNoSchedule, NoExecute$/,
    ],
    ['dedicated', /has no effect/],
    [
      'dedicated=storage:',
      /in "dedicated=storage:", the effect is empty; allowed: NoSchedule, PreferNoSchedule, NoExecute \(case-sensitive\)/,
    ],
    [
      'a:noschedule',
      /the effect "noschedule" is not allowed; did you mean "NoSchedule"\? allowed: NoSchedule, PreferNoSchedule, NoExecute \(case-sensitive\)/,
    ],
    ['a:NOEXECUTE', /did you mean "NoExecute"/],
    ['a:preferNoSchedule', /did you mean "PreferNoSchedule"/],
    ['a:NoSchedul', /did you mean "NoSchedule"/],
    ['a:Always', /the effect "Always" is not allowed; allowed: NoSchedule/],
    [':NoSchedule', /in ":NoSchedule", the key is empty/],
    ['=v:NoSchedule', /the key is empty/],
    ['bad key:NoSchedule', /the key "bad key" is malformed/],
    ['Example.com/k:NoExecute', /the key prefix "Example.com" is malformed/],
    ['k=bad value:NoSchedule', /the value "bad value" is malformed/],
    ['k=a=b:NoSchedule', /the value "a=b" is malformed/],
    ['k=a:b:NoSchedule', /the value "a:b" is malformed/],
    [
      'a:NoSchedule;a:NoSchedule',
      /^shareManagerTolerations: "a:NoSchedule" is given more than once; allowed: each toleration once$/,
    ],
  ])('refuses the toleration %p', (value, message) =>
    refusesWith({ shareManagerTolerations: value }, message),
  );

  it('reports a bad key, value and effect in one toleration together', () => {
    expect(errorsOf({ shareManagerTolerations: '-k=-v:noexecute' })).toEqual([
      expect.stringMatching(/the key "-k" is malformed/),
      expect.stringMatching(/the value "-v" is malformed/),
      expect.stringMatching(/did you mean "NoExecute"/),
    ]);
  });

  it.each(SECRET_STAGES)('refuses half of the %s secret pair', (stage) => {
    const name = `csi.storage.k8s.io/${stage}-secret-name`;
    const namespace = `csi.storage.k8s.io/${stage}-secret-namespace`;
    refusesWith(
      { [name]: 's' },
      new RegExp(`^${name}: is given without ${namespace}; allowed: both of them, or neither$`),
    );
    refusesWith({ [namespace]: 'ns' }, new RegExp(`^${namespace}: is given without ${name}`));
  });

  it('refuses an empty secret name', () => {
    refusesWith(
      {
        'csi.storage.k8s.io/provisioner-secret-name': '',
        'csi.storage.k8s.io/provisioner-secret-namespace': 'ns',
      },
      /^csi.storage.k8s.io\/provisioner-secret-name: is empty; allowed: a name, or a template such as \$\{pvc.name\}$/,
    );
  });
});

describe('parseStorageClassParameters: migratable classes', () => {
  it.each([
    ['fsType', 'xfs', 'have no filesystem'],
    ['csi.storage.k8s.io/fstype', 'ext4', 'have no filesystem'],
    ['nfsOptions', DEFAULT_NFS_OPTIONS, 'are never exported over NFS'],
    ['nfsHardMountAcknowledged', 'true', 'are never exported over NFS'],
    ['shareManagerNodeSelector', 'os:linux', 'never get a share manager'],
    ['shareManagerTolerations', 'a:NoSchedule', 'never get a share manager'],
    ['fastFailover', 'true', 'never get a share manager'],
  ])('refuses %s as having no effect', (key, value, why) => {
    const errors = errorsOf({ migratable: 'true', [key]: value });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBe(
      `${key}: has no effect on a migratable class (migratable: "true"), which serves only ReadWriteMany Block volumes, and those ${why}; remove ${key}, or put Filesystem volumes in a class with migratable: "false"`,
    );
  });

  it('refuses them all at once, without judging their values', () => {
    const errors = errorsOf({
      migratable: 'true',
      fsType: 'ntfs',
      nfsOptions: 'vers=3',
      shareManagerNodeSelector: ';',
      shareManagerTolerations: 'x',
    });
    expect(errors).toHaveLength(4);
    for (const error of errors) expect(error).toMatch(/has no effect on a migratable class/);
  });

  it('checks those keys normally when migratable is itself invalid', () => {
    expect(errorsOf({ migratable: 'True', fsType: 'ntfs' })).toEqual([
      expect.stringMatching(/^migratable: "True" is not allowed/),
      expect.stringMatching(/^fsType: "ntfs" is not supported/),
    ]);
  });

  it('accepts those keys on an explicitly non-migratable class', () => {
    expect(parse({ migratable: 'false', fsType: 'xfs', shareManagerNodeSelector: 'os:linux' })).toEqual({
      ...DEFAULTS,
      fsType: 'xfs',
      shareManagerNodeSelector: { os: 'linux' },
    });
  });
});

describe('parseStorageClassParameters: collects every error', () => {
  it('reports each problem in one pass', () => {
    const errors = errorsOf({
      replicas: '3',
      numberOfReplicas: '3.0',
      staleReplicaTimeout: '2880',
      migratable: 'yes',
      fsType: 'ext3',
      nfsOptions: 'vers=3,hard',
      shareManagerNodeSelector: 'os=linux',
      shareManagerTolerations: 'a:noschedule',
      'csi.storage.k8s.io/provisioner-secret-name': 's',
    });
    expect(errors).toEqual([
      expect.stringMatching(/^replicas: /),
      expect.stringMatching(/^numberOfReplicas: /),
      expect.stringMatching(/^staleReplicaTimeout: /),
      expect.stringMatching(/^migratable: /),
      expect.stringMatching(/^csi.storage.k8s.io\/provisioner-secret-name: /),
      expect.stringMatching(/^fsType: /),
      expect.stringMatching(/^nfsOptions: "vers=3"/),
      expect.stringMatching(/^nfsOptions: "hard"/),
      expect.stringMatching(/^shareManagerNodeSelector: /),
      expect.stringMatching(/^shareManagerTolerations: /),
    ]);
    for (const error of errors) expect(error).toMatch(/allowed|did you mean|nfsHardMountAcknowledged/);
  });
});

describe('withExplicitDefaults', () => {
  it.each([
    ['undefined', undefined],
    ['an empty map', {}],
  ])('makes every default explicit for %s', (_, parameters) => {
    expect(withExplicitDefaults(parameters)).toEqual({
      numberOfReplicas: '3',
      staleReplicaTimeout: '48h',
      migratable: 'false',
      fsType: 'ext4',
      nfsOptions: 'vers=4.1,noresvport,softerr,timeo=600,retrans=5',
    });
  });

  it('keeps given values verbatim, including an unnormalized nfsOptions', () => {
    const given = {
      numberOfReplicas: '2',
      staleReplicaTimeout: '2880m',
      fsType: 'xfs',
      nfsOptions: 'nfsvers=4,minorversion=1',
      shareManagerNodeSelector: 'os:linux',
    };
    expect(withExplicitDefaults(given)).toEqual({ ...given, migratable: 'false' });
  });

  it('follows csi.storage.k8s.io/fstype, so the class still parses afterwards', () => {
    const result = withExplicitDefaults({ 'csi.storage.k8s.io/fstype': 'xfs' });
    expect(result.fsType).toBe('xfs');
    expect(parseStorageClassParameters(result).ok).toBe(true);
  });

  it('adds neither fsType nor nfsOptions to a migratable class', () => {
    const result = withExplicitDefaults({ migratable: 'true' });
    expect(result).toEqual({ migratable: 'true', numberOfReplicas: '3', staleReplicaTimeout: '48h' });
    expect(parseStorageClassParameters(result).ok).toBe(true);
  });

  it('keeps the provisioner keys and does not modify its input', () => {
    const given = {
      'csi.storage.k8s.io/node-stage-secret-name': 'a',
      'csi.storage.k8s.io/node-stage-secret-namespace': 'b',
    };
    const copy = { ...given };
    const result = withExplicitDefaults(given);
    expect(given).toEqual(copy);
    expect(result).toMatchObject(given);
    expect(Object.keys(result)).toHaveLength(7);
  });

  it('is idempotent', () => {
    const once = withExplicitDefaults({ numberOfReplicas: '5' });
    expect(withExplicitDefaults(once)).toEqual(once);
  });

  it('throws on parameters that do not parse', () => {
    expect(() => withExplicitDefaults({ numberOfReplicas: 'three' })).toThrow(
      /needs parameters that parse.*numberOfReplicas/,
    );
  });
});
