import { DEFAULT_NFS_OPTIONS, parseNfsOptions } from './nfs-options.js';
import { didYouMean, parseStrictInteger } from './syntax.js';

const accept = (value: string, hard = false) => {
  const result = parseNfsOptions(value, hard);
  if (!result.ok) throw new Error(`expected ${value} to parse, got: ${result.errors.join(' | ')}`);
  return result.options;
};

const refuse = (value: string, hard = false): string[] => {
  const result = parseNfsOptions(value, hard);
  if (result.ok) throw new Error(`expected ${value} to be refused, got ${result.options}`);
  return result.errors;
};

/** Exactly one error, naming the parameter, matching `message`. */
const refusesWith = (value: string, message: RegExp, hard = false) => {
  const errors = refuse(value, hard);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatch(/^nfsOptions: /);
  expect(errors[0]).toMatch(message);
};

describe('parseStrictInteger', () => {
  it.each([
    ['0', 0],
    ['1', 1],
    ['600', 600],
    ['1048576', 1_048_576],
  ])('accepts %p', (text, value) => expect(parseStrictInteger(text)).toEqual({ ok: true, value }));

  it.each([
    ['00', true],
    ['03', true],
    ['0600', true],
    ['', false],
    ['3.0', false],
    ['three', false],
    ['+3', false],
    ['-1', false],
    [' 3', false],
    ['3 ', false],
    ['1e3', false],
    ['0x10', false],
  ])('refuses %p (leading zero: %p)', (text, leadingZero) =>
    expect(parseStrictInteger(text)).toEqual({ ok: false, leadingZero }),
  );
});

describe('didYouMean', () => {
  const known = ['numberOfReplicas', 'migratable', 'fsType', 'nfsOptions'];
  it.each([
    ['numberofreplicas', 'numberOfReplicas'],
    ['fstype', 'fsType'],
    ['FSTYPE', 'fsType'],
    ['migrateable', 'migratable'],
    ['migratible', 'migratable'],
    ['nfsOption', 'nfsOptions'],
    ['nfsOpts', 'nfsOptions'],
  ])('suggests for %p: %p', (input, expected) => expect(didYouMean(input, known)).toBe(expected));

  it.each(['replicas', 'storageType', 'x'])('suggests nothing for the distant %p', (input) =>
    expect(didYouMean(input, known)).toBeUndefined(),
  );

  it('prefers the closer candidate, and the earlier one on a tie', () => {
    expect(didYouMean('abcd', ['abxy', 'abcx'])).toBe('abcx');
    expect(didYouMean('ab', ['ax', 'ay'])).toBe('ax');
  });
});

describe('parseNfsOptions: accepted', () => {
  it('accepts the default unchanged', () => {
    expect(DEFAULT_NFS_OPTIONS).toBe('vers=4.1,noresvport,softerr,timeo=600,retrans=5');
    expect(accept(DEFAULT_NFS_OPTIONS)).toBe(DEFAULT_NFS_OPTIONS);
  });

  it.each([
    // versions, in every spelling; the result always says vers=4.N
    ['vers=4.0', 'vers=4.0'],
    ['vers=4.1', 'vers=4.1'],
    ['vers=4.2', 'vers=4.2'],
    ['nfsvers=4.0', 'vers=4.0'],
    ['nfsvers=4.2', 'vers=4.2'],
    ['vers=4,minorversion=0', 'vers=4.0'],
    ['vers=4,minorversion=1', 'vers=4.1'],
    ['minorversion=2,nfsvers=4', 'vers=4.2'],
    ['vers=4.1,minorversion=1', 'vers=4.1'],
    // transport
    ['proto=tcp', 'proto=tcp'],
    ['proto=tcp6', 'proto=tcp6'],
    ['tcp', 'proto=tcp'],
    // recovery
    ['soft', 'soft'],
    ['softerr', 'softerr'],
    ['softreval', 'softreval'],
    ['nosoftreval', 'nosoftreval'],
    // numbers
    ['timeo=1', 'timeo=1'],
    ['timeo=6000', 'timeo=6000'],
    ['retrans=1', 'retrans=1'],
    ['retrans=30', 'retrans=30'],
    ['rsize=1024', 'rsize=1024'],
    ['rsize=1048576', 'rsize=1048576'],
    ['wsize=65536', 'wsize=65536'],
    ['nconnect=1', 'nconnect=1'],
    ['nconnect=16', 'nconnect=16'],
    ['max_connect=1', 'max_connect=1'],
    ['max_connect=16', 'max_connect=16'],
    ['port=0', 'port=0'],
    ['port=2049', 'port=2049'],
    ['port=65535', 'port=65535'],
    ['acregmin=0', 'acregmin=0'],
    ['acregmax=60', 'acregmax=60'],
    ['acdirmin=30', 'acdirmin=30'],
    ['acdirmax=4294967295', 'acdirmax=4294967295'],
    ['actimeo=3600', 'actimeo=3600'],
    ['acregmin=5,acregmax=5', 'acregmin=5,acregmax=5'],
    ['retry=0', 'retry=0'],
    ['retry=10000', 'retry=10000'],
    // enumerations
    ['sec=sys', 'sec=sys'],
    ['sec=krb5', 'sec=krb5'],
    ['sec=krb5i', 'sec=krb5i'],
    ['sec=krb5p', 'sec=krb5p'],
    ['sec=krb5p:krb5i:krb5:sys', 'sec=krb5p:krb5i:krb5:sys'],
    ['lookupcache=all', 'lookupcache=all'],
    ['lookupcache=none', 'lookupcache=none'],
    ['lookupcache=pos', 'lookupcache=pos'],
    ['lookupcache=positive', 'lookupcache=positive'],
    ['clientaddr=10.0.0.7', 'clientaddr=10.0.0.7'],
    ['clientaddr=0.0.0.0', 'clientaddr=0.0.0.0'],
    ['clientaddr=fd00::7', 'clientaddr=fd00::7'],
    ['write=lazy', 'write=lazy'],
    ['write=eager', 'write=eager'],
    ['write=wait', 'write=wait'],
    ['xprtsec=none', 'xprtsec=none'],
    ['xprtsec=tls', 'xprtsec=tls'],
    ['xprtsec=mtls', 'xprtsec=mtls'],
    // a realistic full set keeps its order
    [
      'vers=4.2,proto=tcp,softerr,timeo=150,retrans=3,rsize=1048576,wsize=1048576,nconnect=4,noatime,nodiratime',
      'vers=4.2,proto=tcp,softerr,timeo=150,retrans=3,rsize=1048576,wsize=1048576,nconnect=4,noatime,nodiratime',
    ],
    ['noac,vers=4,sync,minorversion=1,tcp', 'noac,vers=4.1,sync,proto=tcp'],
  ])('accepts %p as %p', (input, normalized) => expect(accept(input)).toBe(normalized));

  it.each([
    'ac',
    'noac',
    'cto',
    'nocto',
    'sharecache',
    'nosharecache',
    'rdirplus',
    'nordirplus',
    'fsc',
    'nofsc',
    'bg',
    'fg',
    'resvport',
    'noresvport',
    'migration',
    'nomigration',
    'trunkdiscovery',
    'notrunkdiscovery',
    'ro',
    'rw',
    'noatime',
    'atime',
    'relatime',
    'nodiratime',
    'nosuid',
    'suid',
    'nodev',
    'dev',
    'noexec',
    'exec',
    'sync',
    'async',
  ])('accepts the flag %p', (flag) => expect(accept(flag)).toBe(flag));

  it('accepts hard only when acknowledged', () => {
    expect(accept('vers=4.1,hard,timeo=600', true)).toBe('vers=4.1,hard,timeo=600');
    refusesWith('vers=4.1,hard', /"hard" makes client pods block forever.*nfsHardMountAcknowledged: "true"/);
  });
});

describe('parseNfsOptions: refused', () => {
  it.each([
    [
      '',
      /is empty; .*leave the parameter out for the default "vers=4.1,noresvport,softerr,timeo=600,retrans=5"/,
    ],
    ['soft,', /item 2 is empty \(a leading, trailing or doubled ','\)/],
    [',soft', /item 1 is empty/],
    ['soft,,timeo=600', /item 2 is empty/],
    ['soft, timeo=600', /" timeo=600" contains whitespace; options are separated by ',' alone/],
    ['timeo = 600', /contains whitespace/],
    ['=600', /"=600" has no option name before '='; write name=value/],
    ['soft,=', /"=" has no option name/],
  ])('refuses the malformed list %p', (input, message) => refusesWith(input, message));

  it('reports each empty item of ","', () => {
    expect(refuse(',')).toEqual([
      expect.stringMatching(/^nfsOptions: item 1 is empty.*single commas/),
      expect.stringMatching(/^nfsOptions: item 2 is empty/),
    ]);
  });

  it.each([
    [
      'Soft',
      /"Soft" is not a Linux NFS mount option Tandem accepts; did you mean "soft"\? \(option names are case-sensitive\)/,
    ],
    ['sfot', /did you mean "soft"/],
    ['softer', /did you mean "softerr"/],
    ['noresport', /did you mean "noresvport"/],
    ['timeout=600', /"timeout" is not a Linux NFS mount option.*did you mean "timeo"/],
    ['retrains=5', /did you mean "retrans"/],
    ['nfsver=4.1', /did you mean "nfsvers"/],
    ['lookup_cache=none', /did you mean "lookupcache"/],
    ['maxconnect=2', /did you mean "max_connect"/],
    [
      'defaults',
      /"defaults" is not a Linux NFS mount option.*allowed \(nfs\(5\), NFSv4 over TCP\): vers, nfsvers, soft/,
    ],
    ['_netdev', /"_netdev" is not a Linux NFS mount option/],
  ])('refuses the unknown option %p', (input, message) => refusesWith(input, message));

  it.each([
    ['mountport=20048', /"mountport=20048" is for NFSv3 only \(nfs\(5\)\).*serves NFSv4.*remove it/],
    ['mountproto=tcp', /NFSv3 only/],
    ['mounthost=nfs.example', /NFSv3 only/],
    ['mountvers=3', /NFSv3 only/],
    ['namlen=255', /NFSv3 only/],
    ['lock', /"lock" is for NFSv3 only/],
    ['nolock', /"nolock" is for NFSv3 only/],
    ['acl', /NFSv3 only/],
    ['noacl', /NFSv3 only/],
    ['local_lock=all', /"local_lock=all" is for NFSv3 only/],
    [
      'udp',
      /"udp" asks for UDP, but NFSv4 runs over TCP.*TCP only; use proto=tcp or proto=tcp6, or leave the transport out/,
    ],
    ['rdma', /"rdma" asks for RDMA.*TCP only; use proto=tcp/],
    ['proto=udp', /"proto=udp" asks for UDP.*allowed for proto: tcp or tcp6/],
    ['proto=udp6', /asks for UDP.*allowed for proto: tcp or tcp6/],
    ['proto=rdma', /"proto=rdma" asks for RDMA.*allowed for proto: tcp or tcp6/],
    ['proto=rdma6', /asks for RDMA/],
    ['proto=sctp', /"proto=sctp" is not a transport Tandem serves; allowed for proto: tcp or tcp6/],
    ['intr', /"intr" is ignored since Linux 2.6.25.*remove it/],
    ['nointr', /"nointr" is ignored since Linux 2.6.25/],
    ['sloppy', /"sloppy" makes mount.nfs silently ignore options.*remove it/],
    [
      'vers=3',
      /"vers=3" asks for NFSv3, but Tandem's share manager serves NFSv4 only; allowed for vers: 4.0, 4.1, 4.2/,
    ],
    ['nfsvers=3', /"nfsvers=3" asks for NFSv3.*NFSv4 only; allowed for nfsvers: 4.0, 4.1, 4.2/],
    ['vers=3.0', /asks for NFSv3/],
    ['vers=2', /asks for NFSv2/],
    ['vers=4.3', /"vers=4.3" is not an NFS version Tandem serves; allowed for vers: 4.0, 4.1, 4.2/],
    ['vers=4.10', /not an NFS version/],
    ['vers=v4.1', /not an NFS version/],
    [
      'vers=4',
      /"vers=4" lets the client negotiate the minor version; allowed: vers=4.0, 4.1 or 4.2 \(or add minorversion=0, 1 or 2\)/,
    ],
    ['nfsvers=4', /"nfsvers=4" lets the client negotiate.*nfsvers=4.0/],
  ])('refuses %p with the reason', (input, message) => refusesWith(input, message));

  it.each([
    [
      'timeo=0',
      /"timeo=0" is out of range; allowed for timeo: tenths of a second, a whole number from 1 to 6000/,
    ],
    ['timeo=6001', /out of range.*the kernel caps the timeout at 600 s/],
    ['timeo=0600', /"timeo=0600" has a leading zero, which the kernel would read as an octal number/],
    ['timeo=60.5', /"timeo=60.5" is not a whole number/],
    ['timeo=-1', /not a whole number/],
    ['timeo=+600', /not a whole number/],
    ['timeo=1e3', /not a whole number/],
    ['retrans=0', /"retrans=0" is out of range; allowed for retrans: a whole number from 1 to 30/],
    ['retrans=31', /out of range/],
    ['retrans=five', /not a whole number/],
    [
      'rsize=512',
      /"rsize=512" is out of range; allowed for rsize: bytes, a multiple of 1024 from 1024 to 1048576/,
    ],
    ['rsize=2097152', /out of range/],
    ['rsize=1500', /"rsize=1500" is not a multiple of 1024/],
    ['wsize=1048575', /not a multiple of 1024/],
    ['wsize=0', /out of range/],
    ['nconnect=0', /"nconnect=0" is out of range; allowed for nconnect: a whole number from 1 to 16/],
    ['nconnect=17', /out of range/],
    ['max_connect=0', /allowed for max_connect: a whole number from 1 to 16/],
    ['max_connect=17', /out of range/],
    ['port=65536', /"port=65536" is out of range; allowed for port: a whole number from 0 to 65535/],
    ['port=-1', /not a whole number/],
    [
      'acregmin=-1',
      /"acregmin=-1" is not a whole number; allowed for acregmin: seconds, a whole number from 0/,
    ],
    ['acregmax=1.5', /not a whole number/],
    ['acdirmin=x', /not a whole number/],
    ['acdirmax=4294967296', /out of range/],
    ['actimeo=03', /leading zero/],
    ['retry=-1', /"retry=-1" is not a whole number; allowed for retry: minutes/],
    ['minorversion=3,vers=4', /"minorversion=3" is out of range; allowed for minorversion: 0, 1 or 2/],
    [
      'sec=none',
      /"sec=none" names a flavor that is not allowed; allowed for sec: one or more of sys, krb5, krb5i, krb5p, separated by ':'/,
    ],
    ['sec=krb5,', /item 2 is empty/],
    ['sec=krb5::sys', /names a flavor that is not allowed/],
    ['sec=KRB5', /not allowed/],
    ['sec=sys:sys', /"sec=sys:sys" names a flavor twice/],
    [
      'lookupcache=negative',
      /"lookupcache=negative" is not one of the allowed values; allowed for lookupcache: all, none, pos or positive/,
    ],
    ['lookupcache=ALL', /not one of the allowed values/],
    [
      'clientaddr=10.0.0',
      /"clientaddr=10.0.0" is not an IP address; allowed for clientaddr: an IPv4 or IPv6 address/,
    ],
    ['clientaddr=node-1', /not an IP address/],
    ['write=sometimes', /allowed for write: lazy, eager or wait/],
    ['xprtsec=ssl', /allowed for xprtsec: none, tls or mtls/],
  ])('refuses the bad value %p', (input, message) => refusesWith(input, message));

  it.each([
    ['timeo', /"timeo" has no value; write timeo=<value>, allowed for timeo: tenths of a second/],
    ['timeo=', /"timeo=" has no value/],
    ['vers', /"vers" has no value; write vers=<value>, allowed for vers: 4.0, 4.1, 4.2/],
    ['proto', /has no value.*tcp or tcp6/],
    ['sec', /has no value/],
    ['clientaddr', /has no value/],
    ['rsize', /has no value/],
    ['minorversion', /has no value/],
  ])('refuses the valued option %p without a value', (input, message) => refusesWith(input, message));

  it.each([
    ['soft=1', /"soft=1": soft takes no value; write just "soft"/],
    ['softerr=yes', /softerr takes no value/],
    ['noresvport=true', /noresvport takes no value/],
    ['ro=1', /ro takes no value/],
    ['tcp=1', /tcp takes no value/],
    ['fsc=cache1', /fsc takes no value/],
    ['noac=', /noac takes no value/],
  ])('refuses the flag %p given a value', (input, message) => refusesWith(input, message));

  it.each([
    [
      'soft,hard',
      /"soft" and "hard" are mutually exclusive \(both set what happens when the server stops answering\); give only one/,
    ],
    ['softerr,soft', /"softerr" and "soft" are mutually exclusive/],
    ['hard,softerr', /"hard" and "softerr" are mutually exclusive/],
    ['ac,noac', /"ac" and "noac" are mutually exclusive \(both set attribute caching\)/],
    ['ro,rw', /mutually exclusive/],
    ['sync,async', /mutually exclusive/],
    ['noatime,relatime', /mutually exclusive \(both set access time updates\)/],
    ['resvport,noresvport', /mutually exclusive/],
    ['proto=tcp6,tcp', /"proto=tcp6" and "tcp" are the same option \(both set the transport\); give it once/],
    [
      'vers=4.1,nfsvers=4.1',
      /"vers=4.1" and "nfsvers=4.1" are the same option \(both set the NFS version\); give it once/,
    ],
    ['timeo=600,timeo=100', /"timeo" is given more than once \("timeo=600", "timeo=100"\); give it once/],
    ['soft,soft', /"soft" is given more than once/],
    ['vers=4.1,vers=4.1', /"vers" is given more than once/],
  ])('refuses the conflicting %p', (input, message) => refusesWith(input, message, true));

  it('reports soft,softerr,hard as two conflicts with the first', () => {
    const errors = refuse('soft,softerr,hard', true);
    expect(errors).toEqual([
      expect.stringMatching(/"soft" and "softerr" are mutually exclusive/),
      expect.stringMatching(/"soft" and "hard" are mutually exclusive/),
    ]);
  });

  it.each([
    [
      'minorversion=1',
      /"minorversion=1" needs vers=4 next to it; allowed: vers=4.1, or vers=4,minorversion=1/,
    ],
    [
      'vers=4.1,minorversion=2',
      /"minorversion=2" contradicts "vers=4.1"; allowed: minorversion=1 with it, or leave minorversion out/,
    ],
    ['nfsvers=4.0,minorversion=1', /contradicts "nfsvers=4.0"; allowed: minorversion=0/],
    [
      'actimeo=30,acregmin=3',
      /"actimeo" sets acregmin, acregmax, acdirmin and acdirmax at once, so it conflicts with acregmin; give either/,
    ],
    [
      'acregmin=61,acregmax=60',
      /"acregmin=61" is larger than "acregmax=60"; allowed: acregmin at most acregmax/,
    ],
    ['acdirmax=10,acdirmin=30', /"acdirmin=30" is larger than "acdirmax=10"/],
  ])('refuses the inconsistent %p', (input, message) => refusesWith(input, message));

  it('does not blame minorversion on a missing vers when vers was given but wrong', () => {
    const errors = refuse('vers=3,minorversion=1');
    expect(errors).toEqual([expect.stringMatching(/"vers=3" asks for NFSv3/)]);
  });

  it('reports every problem at once, each naming the parameter', () => {
    const errors = refuse('vers=3,Soft,timeo=0,rsize=1000,nolock,,hard,udp,intr,soft=1,sec=none');
    expect(errors).toHaveLength(11);
    for (const error of errors)
      expect(error).toMatch(
        /^nfsOptions: .*(allowed|remove it|did you mean|give|single commas|nfsHardMountAcknowledged|write just|use proto=tcp)/,
      );
  });
});
