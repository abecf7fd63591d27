import { readFileSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { aborted, CsiError, invalidArgument, notFound } from './errors.js';
import { csiProtoPath } from './proto.js';
import {
  type CsiHandler,
  lockKey,
  redactRequest,
  runRpc,
  serviceImplementation,
  VolumeLocks,
} from './rpc.js';

/** A logger whose lines land in an array, to check what reaches the log. */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function rejection(promise: Promise<unknown>): Promise<CsiError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CsiError);
    return err as CsiError;
  }
  throw new Error('expected the call to fail');
}

const ok: CsiHandler = async () => ({ done: true });

describe('redactRequest', () => {
  it('hides the values of secrets maps at any depth and keeps their keys', () => {
    const request = {
      volume_id: 'pvc-1',
      secrets: { username: 'admin', password: 'hunter22' },
      nested: { deeper: [{ secrets: { token: 'abcd1234' } }] },
      data: Buffer.from('raw bytes'),
    };
    const { shown, secrets } = redactRequest(request);
    expect(shown).toEqual({
      volume_id: 'pvc-1',
      secrets: { username: '[redacted]', password: '[redacted]' },
      nested: { deeper: [{ secrets: { token: '[redacted]' } }] },
      data: '[9 bytes]',
    });
    expect(secrets.sort()).toEqual(['abcd1234', 'admin', 'hunter22']);
    expect(request.secrets.password).toBe('hunter22');
  });

  it('covers every csi_secret field of csi.proto (the loader does not expose the option, names do)', () => {
    const proto = readFileSync(csiProtoPath(), 'utf8');
    const marked = [...proto.matchAll(/(\w+)\s*=\s*\d+\s*\[[^\]]*\(csi_secret\)\s*=\s*true/g)].map(
      (m) => m[1],
    );
    expect(marked.length).toBeGreaterThan(10);
    expect(new Set(marked)).toEqual(new Set(['secrets']));
  });
});

describe('lockKey', () => {
  it('uses the name for CreateVolume and volume_id otherwise', () => {
    expect(lockKey('CreateVolume', { name: 'pvc-1', volume_id: 'x' })).toBe('pvc-1');
    expect(lockKey('NodeStageVolume', { volume_id: 'pvc-2' })).toBe('pvc-2');
  });
  it('takes no lock for calls without a volume or that only read', () => {
    expect(lockKey('GetPluginInfo', {})).toBeUndefined();
    expect(lockKey('DeleteVolume', { volume_id: '' })).toBeUndefined();
    expect(lockKey('NodeGetVolumeStats', { volume_id: 'pvc-2' })).toBeUndefined();
  });
});

describe('runRpc', () => {
  it('logs method, code, duration and the redacted request', async () => {
    const { logger, lines } = capturingLogger();
    const response = await runRpc(
      'NodeStageVolume',
      { volume_id: 'pvc-1', secrets: { key: 'v3ry-s3cret' } },
      ok,
      { logger, locks: new VolumeLocks() },
    );
    expect(response).toEqual({ done: true });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      method: 'NodeStageVolume',
      code: 'OK',
      request: { volume_id: 'pvc-1', secrets: { key: '[redacted]' } },
    });
    expect(typeof lines[0]?.durationMs).toBe('number');
    expect(JSON.stringify(lines)).not.toContain('v3ry-s3cret');
  });

  it('refuses a second call on the same volume with ABORTED while the first runs', async () => {
    const locks = new VolumeLocks();
    const { logger } = capturingLogger();
    const gate = deferred();
    const first = runRpc('ControllerPublishVolume', { volume_id: 'pvc-1' }, () => gate.promise, {
      logger,
      locks,
    });
    const second = await rejection(
      runRpc('ControllerUnpublishVolume', { volume_id: 'pvc-1' }, ok, { logger, locks }),
    );
    expect(second.code).toBe(status.ABORTED);
    expect(second.message).toBe('operation already in progress for volume pvc-1');
    // CreateVolume's name and a volume id are one key: a Tandem volume id is its name.
    expect((await rejection(runRpc('CreateVolume', { name: 'pvc-1' }, ok, { logger, locks }))).code).toBe(
      status.ABORTED,
    );
    // Other volumes, and calls without a volume, are not held up.
    await expect(runRpc('NodeStageVolume', { volume_id: 'pvc-2' }, ok, { logger, locks })).resolves.toEqual({
      done: true,
    });
    await expect(runRpc('Probe', {}, ok, { logger, locks })).resolves.toEqual({ done: true });
    gate.resolve();
    await first;
  });

  it('releases the volume after success and after failure', async () => {
    const locks = new VolumeLocks();
    const { logger } = capturingLogger();
    await runRpc('DeleteVolume', { volume_id: 'pvc-1' }, ok, { logger, locks });
    expect(locks.size).toBe(0);
    const failing: CsiHandler = async () => {
      throw notFound('no such volume');
    };
    await rejection(runRpc('DeleteVolume', { volume_id: 'pvc-1' }, failing, { logger, locks }));
    expect(locks.size).toBe(0);
    const crashing: CsiHandler = async () => {
      throw new TypeError('x is undefined');
    };
    await rejection(runRpc('DeleteVolume', { volume_id: 'pvc-1' }, crashing, { logger, locks }));
    expect(locks.isHeld('pvc-1')).toBe(false);
    await expect(
      runRpc('DeleteVolume', { volume_id: 'pvc-1' }, ok, { logger, locks }),
    ).resolves.toBeDefined();
  });

  it('passes CsiErrors through with their code and message', async () => {
    const { logger, lines } = capturingLogger();
    const handler: CsiHandler = async () => {
      throw invalidArgument('volume_capabilities is required');
    };
    const err = await rejection(
      runRpc('CreateVolume', { name: 'v' }, handler, { logger, locks: new VolumeLocks() }),
    );
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.message).toBe('volume_capabilities is required');
    expect(lines[0]).toMatchObject({
      level: 40,
      code: 'INVALID_ARGUMENT',
      message: 'volume_capabilities is required',
    });
  });

  it('maps any other error to INTERNAL with a safe message and logs the details under a reference', async () => {
    const { logger, lines } = capturingLogger();
    const handler: CsiHandler = async () => {
      throw new Error('mount -o pass=hunter22 failed: connection refused to 10.0.0.7');
    };
    const err = await rejection(
      runRpc('NodePublishVolume', { volume_id: 'v', secrets: { pass: 'hunter22' } }, handler, {
        logger,
        locks: new VolumeLocks(),
      }),
    );
    expect(err.code).toBe(status.INTERNAL);
    expect(err.message).not.toContain('10.0.0.7');
    const reference = /reference ([0-9a-f]{8})/.exec(err.message)?.[1];
    expect(reference).toBeDefined();
    expect(lines[0]).toMatchObject({ level: 50, code: 'INTERNAL', reference });
    expect(String(lines[0]?.cause)).toContain('connection refused to 10.0.0.7');
    expect(JSON.stringify(lines)).not.toContain('hunter22');
  });

  it('scrubs the request secrets from messages of CsiErrors too', async () => {
    const { logger } = capturingLogger();
    const handler: CsiHandler = async () => {
      throw aborted('key abcd-1234 rejected');
    };
    const err = await rejection(
      runRpc('NodeStageVolume', { volume_id: 'v', secrets: { key: 'abcd-1234' } }, handler, {
        logger,
        locks: new VolumeLocks(),
      }),
    );
    expect(err.message).toBe('key [redacted] rejected');
    expect(err.code).toBe(status.ABORTED);
  });

  it('logs quiet methods at debug and others at info', async () => {
    const { logger, lines } = capturingLogger();
    const options = { logger, locks: new VolumeLocks() };
    await runRpc('Probe', {}, ok, options);
    await runRpc('CreateVolume', { name: 'v' }, ok, options);
    expect(lines.map((line) => line.level)).toEqual([20, 30]);
  });
});

describe('serviceImplementation', () => {
  it('refuses a handler for a method the service does not define', () => {
    const { logger } = capturingLogger();
    expect(() =>
      serviceImplementation({}, { GetPluginInfo: ok }, { logger, locks: new VolumeLocks() }),
    ).toThrow('the CSI service has no method GetPluginInfo');
  });
});
