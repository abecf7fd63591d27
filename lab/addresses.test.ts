import { clusterAddresses, firstAddress } from './addresses.js';

describe('the lab address plan', () => {
  it('gives each network its own ClusterIP range and a pod range per node', () => {
    expect(clusterAddresses(3, 3)).toEqual({
      clusterCidr: '198.19.3.0/24',
      serviceCidr: '198.19.3.0/26',
      podCidrs: ['198.19.3.64/27', '198.19.3.96/27', '198.19.3.128/27'],
    });
    expect(clusterAddresses(254, 6).podCidrs.at(-1)).toBe('198.19.254.224/27');
  });

  it('refuses subnets and node counts outside the plan', () => {
    expect(() => clusterAddresses(0, 1)).toThrow(/1\.\.254/);
    expect(() => clusterAddresses(1, 7)).toThrow(/1 to 6 nodes/);
  });

  it('finds the first host address of a range', () => {
    expect(firstAddress('198.19.3.0/26')).toBe('198.19.3.1');
    expect(firstAddress('198.19.3.70/27')).toBe('198.19.3.65');
    expect(() => firstAddress('198.19.3.0')).toThrow(/not an IPv4 CIDR/);
    expect(() => firstAddress('198.19.3.0/31')).toThrow(/room for hosts/);
  });
});
