export default async function globalTeardown(): Promise<void> {
  await globalThis.tandemControlPlane?.stop();
  globalThis.tandemControlPlane = undefined;
}
