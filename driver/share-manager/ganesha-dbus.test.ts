import { parseGlobalOps, privateBusConfig } from './ganesha-dbus.js';

// GetGlobalOPS as `dbus-send --print-reply` printed it for Debian's Ganesha 4.3.
const REPLY = `method return time=1796668370.614636 sender=:1.0 -> destination=:1.3 serial=11 reply_serial=2
   boolean true
   string "OK"
   struct {
      uint64 1796668364
      uint64 662145894
   }
   struct {
      string "NFSv3"
      uint64 0
      string "NFSv40"
      uint64 0
      string "NFSv41"
      uint64 42
      string "NFSv42"
      uint64 7
      string "NLM4"
      uint64 0
   }
`;

test('GetGlobalOPS: counts by protocol, the status and timestamp left out', () => {
  expect(parseGlobalOps(REPLY)).toEqual({ NFSv3: 0, NFSv40: 0, NFSv41: 42, NFSv42: 7, NLM4: 0 });
});

test('a refusal is an error in its own words', () => {
  expect(() => parseGlobalOps('method return\n   boolean false\n   string "Stats disabled"\n')).toThrow(
    /refused GetGlobalOPS.*Stats disabled/,
  );
});

test('the private bus listens on its socket only and lets root alone in', () => {
  const config = privateBusConfig('/var/lib/tandem/share-manager/pvc-1/ganesha/bus');
  expect(config).toContain('<listen>unix:path=/var/lib/tandem/share-manager/pvc-1/ganesha/bus</listen>');
  expect(config).toMatch(/<deny user="\*"\/>\s*<allow user="root"\/>/);
  expect(config).toContain('<allow own="org.ganesha.nfsd"/>');
});
