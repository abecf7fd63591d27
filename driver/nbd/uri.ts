/**
 * The NBD URI for a unix socket (RFC-style nbd+unix, as libnbd parses it): the export name is the
 * path, the socket a query parameter; both percent-encoded except for slashes.
 */
export function unixSocketUri(socketPath: string, exportName: string): string {
  const encode = (s: string) => encodeURIComponent(s).replace(/%2F/g, '/');
  return `nbd+unix:///${encode(exportName)}?socket=${encode(socketPath)}`;
}
