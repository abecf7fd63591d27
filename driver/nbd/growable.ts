/**
 * The growable export: a second name under which the engine's NBD server offers a volume, with a
 * fixed size far larger than the volume, while every request past the volume's current size is
 * refused (ENOSPC for writes, EINVAL for the rest). Only the node plugin's nbdfuse + loop frontend
 * uses it: nbdfuse fixes its file's size when it connects, so it is given the largest size a
 * volume can ever reach, and the loop device over that file is bounded by its `lo_sizelimit`,
 * which the kernel lets the node raise on a live device after an expansion (docs/dataplane.md,
 * "Expansion"). Every other client (kernel NBD, QEMU, fio, nbdcopy) uses the volume's own export
 * and sees its exact size.
 */

/**
 * `<volume>@growable`. `@` cannot occur in a volume name (a DNS-1123 subdomain: lower-case
 * letters, digits, `-` and `.`), so no volume's export can be called this; NBD export names are
 * any UTF-8 up to 4096 bytes, and `@` is percent-encoded in nbd+unix URIs (block-device.ts).
 */
export const GROWABLE_SUFFIX = '@growable';

export function growableExportName(exportName: string): string {
  return `${exportName}${GROWABLE_SUFFIX}`;
}

/**
 * The size the growable export advertises: the largest volume Tandem creates (whole 4 KiB blocks
 * below 2^53, controller/create-volume.ts MAX_VOLUME_BYTES; a test keeps the two equal). FUSE
 * files and loop devices take up to 2^63 - 1 bytes; nothing is allocated for the unused part.
 */
export const GROWABLE_EXPORT_BYTES = Math.floor(Number.MAX_SAFE_INTEGER / 4096) * 4096;
