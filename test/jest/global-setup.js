// Jest loads global setup through CommonJS require, which cannot load
// @kubernetes/client-node (ESM only) on Node 20; this native-ESM shim hands
// the TypeScript setup to tsx's loader instead.
import { tsImport } from 'tsx/esm/api';

export default async function globalSetup() {
  const { default: setup } = await tsImport('./control-plane-setup.ts', import.meta.url);
  await setup();
}
