/**
 * kube-controller-manager and kube-scheduler beside the lab's apiserver, with the identities and
 * flags kubeadm gives them: each its own client certificate (system:kube-controller-manager,
 * system:kube-scheduler, bound by the apiserver's bootstrap RBAC), the controller-manager's
 * controllers each under its own ServiceAccount, serving on loopback only.
 */
import { request } from 'node:https';
import { join } from 'node:path';
import type { Logger } from '../lib/log.js';
import { freePort } from '../lib/ports.js';
import { Service } from '../lib/service.js';
import { waitUntil } from './startup.js';
import { toolPath } from './tools.js';

export interface ControllersContext {
  dirs: { pki: string; logs: string };
  pki: { caCert: string; saPrivate: string };
  serviceCidr: string;
  writeKubeconfig(file: string, user: string, groups?: readonly string[]): Promise<string>;
  logger: Logger;
  readyTimeoutMs?: number;
}

/** Starts both and resolves once each answers /healthz; the caller stops the returned services. */
export async function startControllers(context: ControllersContext): Promise<Service[]> {
  const { dirs, pki, logger } = context;
  const started: Service[] = [];
  try {
    const kcmConfig = await context.writeKubeconfig(
      join(dirs.pki, 'controller-manager.kubeconfig'),
      'system:kube-controller-manager',
    );
    const kcmPort = await freePort();
    started.push(
      await startComponent(context, 'kube-controller-manager', kcmPort, [
        `--kubeconfig=${kcmConfig}`,
        `--authentication-kubeconfig=${kcmConfig}`,
        `--authorization-kubeconfig=${kcmConfig}`,
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${pki.saPrivate}`,
        // Published into every namespace as kube-root-ca.crt, which pods' projected tokens mount.
        `--root-ca-file=${pki.caCert}`,
        `--service-cluster-ip-range=${context.serviceCidr}`,
        '--leader-elect=false',
        '--profiling=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${kcmPort}`,
        `--cert-dir=${join(dirs.pki, 'controller-manager')}`,
      ]),
    );
    const schedulerConfig = await context.writeKubeconfig(
      join(dirs.pki, 'scheduler.kubeconfig'),
      'system:kube-scheduler',
    );
    const schedulerPort = await freePort();
    started.push(
      await startComponent(context, 'kube-scheduler', schedulerPort, [
        `--kubeconfig=${schedulerConfig}`,
        `--authentication-kubeconfig=${schedulerConfig}`,
        `--authorization-kubeconfig=${schedulerConfig}`,
        '--leader-elect=false',
        '--profiling=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${schedulerPort}`,
        `--cert-dir=${join(dirs.pki, 'scheduler')}`,
      ]),
    );
    logger.info({ controllerManagerPort: kcmPort, schedulerPort }, 'controller-manager and scheduler ready');
    return started;
  } catch (err) {
    for (const service of started.reverse()) await service.stop();
    throw err;
  }
}

async function startComponent(
  context: ControllersContext,
  name: 'kube-controller-manager' | 'kube-scheduler',
  port: number,
  args: string[],
): Promise<Service> {
  const logFile = join(context.dirs.logs, `${name}.log`);
  const service = new Service({ name, command: toolPath(name), args, logFile, logger: context.logger });
  await waitUntil(name, service, logFile, context.readyTimeoutMs, () => healthy(port)).catch(
    async (err: unknown) => {
      await service.stop();
      throw err;
    },
  );
  return service;
}

/** GET /healthz on a component's self-signed loopback endpoint (always allowed without auth). */
function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false, timeout: 2_000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
