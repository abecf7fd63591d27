/**
 * NFS-Ganesha's configuration for one share manager, generated from the volume and its class.
 * Every option set here is one Ganesha documents (config_samples/config.txt in nfs-ganesha-doc);
 * ganesha-config.test.ts checks each key and value against that document, so a typo cannot hide
 * in a block Ganesha would only warn about.
 *
 * What the choices are for:
 * - NFSv4.1 and 4.2 only, TCP only, no NLM, RQUOTA or MNT: v4.1 sessions give exactly-once
 *   replies and lock reclaim without the side protocols (and the ports) of v3.
 * - Clustered = false with the fs_ng recovery backend: client records live in
 *   RecoveryRoot/v4recov/<hostname>, so the hostname Ganesha sees is pinned per volume (the share
 *   manager runs it in a UTS namespace named after the volume); RecoveryRoot is on the volume,
 *   outside the exported directory, so the records move with the volume and clients never see them.
 * - Server_Scope pinned per volume: a client that sees the same scope after a move knows its
 *   state may be reclaimed (RFC 8881 §2.10.4).
 */

export interface GaneshaSettings {
  /** The exported directory (on the volume). */
  exportPath: string;
  /** Where client recovery records live (on the volume, not under exportPath). */
  recoveryRoot: string;
  /** The same for every share manager of this volume, wherever it runs. */
  serverScope: string;
  bindAddress: string;
  port: number;
  graceSeconds: number;
  leaseSeconds: number;
  pluginsDir: string;
}

export const DEBIAN_GANESHA_PLUGINS = '/usr/lib/x86_64-linux-gnu/ganesha';

/** Lease and grace by failover mode: grace must outlast a lease so every client can come back. */
export function failoverTimings(fastFailover: boolean): { graceSeconds: number; leaseSeconds: number } {
  return fastFailover ? { graceSeconds: 30, leaseSeconds: 20 } : { graceSeconds: 90, leaseSeconds: 60 };
}

export type GaneshaValue = string | number | boolean | readonly (string | number)[];

export interface GaneshaBlock {
  name: string;
  options: ReadonlyArray<readonly [string, GaneshaValue]>;
  blocks?: readonly GaneshaBlock[];
}

export function ganeshaBlocks(settings: GaneshaSettings): GaneshaBlock[] {
  if (settings.graceSeconds < settings.leaseSeconds)
    throw new Error(
      `grace (${settings.graceSeconds} s) must not be shorter than the lease (${settings.leaseSeconds} s)`,
    );
  if (
    settings.exportPath === settings.recoveryRoot ||
    settings.recoveryRoot.startsWith(`${settings.exportPath}/`)
  )
    throw new Error(
      `recovery records (${settings.recoveryRoot}) must live outside the export (${settings.exportPath})`,
    );
  return [
    {
      name: 'NFS_CORE_PARAM',
      options: [
        ['NFS_Protocols', [4]],
        ['NFS_Port', settings.port],
        ['Bind_addr', settings.bindAddress],
        ['Enable_NLM', false],
        ['Enable_RQUOTA', false],
        ['Enable_UDP', 'False'],
        ['Clustered', false],
        ['Plugins_Dir', settings.pluginsDir],
        ['Enable_NFS_Stats', true],
      ],
    },
    {
      name: 'NFSV4',
      options: [
        ['Minor_Versions', [1, 2]],
        ['Grace_Period', settings.graceSeconds],
        ['Lease_Lifetime', settings.leaseSeconds],
        ['RecoveryBackend', 'fs_ng'],
        ['RecoveryRoot', settings.recoveryRoot],
        ['Server_Scope', settings.serverScope],
        ['Delegations', false],
        ['Allow_Numeric_Owners', true],
        ['Only_Numeric_Owners', true],
      ],
    },
    // No Kerberos: AUTH_SYS inside the cluster, as the class's nfsOptions mount it.
    { name: 'NFS_KRB5', options: [['Active_krb5', false]] },
    {
      name: 'EXPORT',
      options: [
        ['Export_id', 1],
        ['Path', settings.exportPath],
        ['Pseudo', '/'],
        ['Protocols', [4]],
        ['Transports', ['TCP']],
        ['Access_Type', 'RW'],
        // Pods write as whatever uid they run as, root included: the export is a disk, not a home directory.
        ['Squash', 'no_root_squash'],
        ['SecType', ['sys']],
      ],
      blocks: [{ name: 'FSAL', options: [['Name', 'VFS']] }],
    },
    { name: 'LOG', options: [['Default_log_level', 'EVENT']] },
  ];
}

function renderValue(value: GaneshaValue): string {
  if (Array.isArray(value)) return value.map((v) => renderValue(v as string | number)).join(', ');
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return String(value);
  const text = value as string;
  // Paths and free strings are quoted; Ganesha's tokens (RW, fs_ng, TCP) are bare words.
  if (/^[A-Za-z0-9_.]+$/.test(text)) return text;
  if (/["\n]/.test(text)) throw new Error(`Ganesha option value ${JSON.stringify(text)} cannot be quoted`);
  return `"${text}"`;
}

function renderBlock(block: GaneshaBlock, indent: string): string {
  const lines = [`${indent}${block.name} {`];
  for (const [key, value] of block.options) lines.push(`${indent}  ${key} = ${renderValue(value)};`);
  for (const inner of block.blocks ?? []) lines.push(renderBlock(inner, `${indent}  `));
  lines.push(`${indent}}`);
  return lines.join('\n');
}

export function renderGaneshaConfig(settings: GaneshaSettings): string {
  const header = '# Generated by tandem share-manager; edits are overwritten on its next start.\n';
  return `${header}${ganeshaBlocks(settings)
    .map((b) => renderBlock(b, ''))
    .join('\n\n')}\n`;
}
