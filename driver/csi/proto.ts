import { join } from 'node:path';
import {
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { packageRoot } from '../../lib/paths.js';

/**
 * The CSI spec's own csi.proto, read at run time (tsc does not compile it, so
 * the image copies it next to dist/). Found from the package root, so the same
 * path works from the sources and from dist/.
 */
export function csiProtoPath(): string {
  return join(packageRoot(), 'driver', 'csi', 'csi.proto');
}

/**
 * How decoded messages look to handlers:
 * - keepCase: field names as in the spec (`volume_id`, `capacity_range`), so
 *   handlers read the same names the spec and the sidecars' logs use;
 * - longs: String: int64 byte counts stay exact (Number loses precision above
 *   2^53, and a limit_bytes near 2^63 is legal); handlers convert after
 *   checking the range. Responses may set int64 fields as numbers or strings;
 * - enums: String: `SINGLE_NODE_WRITER`, not 1, in code and in log lines;
 * - defaults: true: absent scalars read as ''/0/false, absent maps and lists
 *   as {} and [], absent messages as null, so "not set" has one spelling;
 * - oneofs: true: a oneof's name holds which member is set (`access_type:
 *   'mount'`), rather than probing every member.
 */
const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

export interface CsiServices {
  Identity: ServiceDefinition;
  Controller: ServiceDefinition;
  Node: ServiceDefinition;
}

export interface CsiClients {
  Identity: ServiceClientConstructor;
  Controller: ServiceClientConstructor;
  Node: ServiceClientConstructor;
}

let loaded: { services: CsiServices; clients: CsiClients } | undefined;

function load(): { services: CsiServices; clients: CsiClients } {
  if (loaded) return loaded;
  const grpcObject = loadPackageDefinition(loadSync(csiProtoPath(), LOADER_OPTIONS));
  const v1 = (grpcObject.csi as GrpcObject | undefined)?.v1 as GrpcObject | undefined;
  const client = (name: keyof CsiServices): ServiceClientConstructor => {
    const found = v1?.[name] as ServiceClientConstructor | undefined;
    if (typeof found !== 'function' || !found.service)
      throw new Error(`${csiProtoPath()} defines no service csi.v1.${name}`);
    return found;
  };
  const clients: CsiClients = {
    Identity: client('Identity'),
    Controller: client('Controller'),
    Node: client('Node'),
  };
  loaded = {
    clients,
    services: {
      Identity: clients.Identity.service,
      Controller: clients.Controller.service,
      Node: clients.Node.service,
    },
  };
  return loaded;
}

/** The service definitions to serve (csi.v1.Identity, Controller, Node); the file is read once, on first use. */
export function csiServices(): CsiServices {
  return load().services;
}

/** Client constructors for the same services: tests and diagnostics call the driver through them. */
export function csiClients(): CsiClients {
  return load().clients;
}
