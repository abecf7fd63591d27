import { countEstablished, ShareManagerMetrics } from './metrics.js';

// /proc/net/tcp as the kernel writes it: the listener on 127.0.1.1:2049 (state 0A), two clients
// connected to it (01), one connection elsewhere, one to the export that is closing (06).
const TABLE = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0101007F:0801 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0101007F:0801 0102007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0101007F:0801 0302007F:A001 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 20 4 30 10 -1
   4: 0101007F:0801 0202007F:B002 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0000000000000000
`;

// /proc/net/tcp6 with Ganesha's IPv6 listener: one IPv4 client, v4-mapped (::ffff:127.0.1.1).
const TABLE6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0801 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000101007F:0801 0000000000000000FFFF00000102007F:C001 01 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 20 4 30 10 -1
`;

test('counts IPv4 clients of an IPv6 listener, as /proc/net/tcp6 shows them v4-mapped', () => {
  expect(countEstablished(`${TABLE}\n${TABLE6}`, '127.0.1.1', 2049)).toBe(3);
});

test('counts the established connections to the export, not its listener, others or closing ones', () => {
  expect(countEstablished(TABLE, '127.0.1.1', 2049)).toBe(2);
  expect(countEstablished(TABLE, '127.0.0.1', 8080)).toBe(1);
  expect(countEstablished(TABLE, '127.0.1.2', 2049)).toBe(0);
});

test('not serving: up 0 and no client figure', async () => {
  const metrics = new ShareManagerMetrics('pvc-1', () => undefined);
  const text = await metrics.registry.metrics();
  expect(text).toMatch(/tandem_share_manager_up\{volume="pvc-1",component="share-manager"\} 0/);
  expect(text).not.toMatch(/tandem_share_manager_clients\{/);
});

test("NFS operations follow Ganesha's cumulative counts by protocol; the protocols the export does not serve are left out", async () => {
  let counts: Record<string, number> | undefined;
  const metrics = new ShareManagerMetrics(
    'pvc-1',
    () => undefined,
    async () => counts,
  );
  expect(await metrics.registry.metrics()).not.toMatch(/tandem_share_manager_nfs_operations_total\{/);
  counts = { NFSv3: 0, NFSv40: 3, NFSv41: 120, NFSv42: 0, NLM4: 0 };
  let text = await metrics.registry.metrics();
  expect(text).toMatch(
    /tandem_share_manager_nfs_operations_total\{volume="pvc-1",protocol="NFSv41",component="share-manager"\} 120/,
  );
  expect(text).toMatch(
    /tandem_share_manager_nfs_operations_total\{volume="pvc-1",protocol="NFSv42",component="share-manager"\} 0/,
  );
  expect(text).not.toMatch(/protocol="NFSv40"/);
  counts = { NFSv41: 150, NFSv42: 7 };
  text = await metrics.registry.metrics();
  expect(text).toMatch(/protocol="NFSv41",component="share-manager"\} 150/);
  expect(text).toMatch(/protocol="NFSv42",component="share-manager"\} 7/);
});
