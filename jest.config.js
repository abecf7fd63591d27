// Three projects: unit tests sit next to the code and need nothing running;
// integration tests share one real etcd + kube-apiserver started by the global
// setup (only when an integration test is selected) and need root for network
// namespaces; end-to-end tests run on real nodes the lab starts. TypeScript is
// transpiled by SWC; `npm test` type-checks with tsc.
const common = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
        module: { type: 'es6' },
        sourceMaps: 'inline',
      },
    ],
  },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
};

export default {
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: [
        '<rootDir>/{lib,cli,driver,webhook,migrator,lab,bench,test/harness,test/faults}/**/*.test.ts',
      ],
    },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      globalSetup: '<rootDir>/test/jest/global-setup.js',
      globalTeardown: '<rootDir>/test/jest/global-teardown.js',
    },
    {
      // Real nodes (kubelet, containerd) with Tandem installed from its manifests: each suite
      // starts its own cluster through the lab (lab/lab.ts), so no shared control plane.
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.e2e.ts'],
    },
  ],
  // Integration tests start real processes; unit tests finish in milliseconds either way.
  testTimeout: 60_000,
  reporters: ['default', '<rootDir>/test/jest/summary-reporter.js'],
};
