#!/usr/bin/env bash
# Builds the lab's and the tests' guest: Debian's own kernel (the linux-image package that
# linux-image-amd64 depends on, fetched with apt-get download from this machine's mirror) and
# an initramfs holding tandem-guest as /init plus the virtio modules it loads (Debian builds
# virtio, virtio_pci and virtio_blk as modules, so the kernel alone cannot see its disk).
#
# Cached under ${TANDEM_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/guest}/<key>, keyed on
# the kernel package's version, the guest program and the Go toolchain; a run with nothing
# changed takes a second. Prints the folder holding vmlinuz and initrd.img as its last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TANDEM_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/guest}
# Bumped whenever this script changes how the guest is made.
recipe=1
# In load order: each needs the ones before it (virtio needs virtio_ring's symbols).
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)

die() {
  echo "guest: error: $*" >&2
  exit 1
}
for tool in apt-cache apt-get dpkg-deb cpio gzip go sha256sum flock; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/debian-packages.txt lists the packages)"
done
[ "$(go env GOARCH)" = amd64 ] || die "the guest is built for x86_64 (QEMU's q35 machine); this Go targets $(go env GOARCH)"

# The kernel package the metapackage points at, and the version the mirror serves.
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -nE 's/^[[:space:]]*Depends: (linux-image-[0-9][^[:space:]]*-amd64)$/\1/p' | head -n1)
[ -n "$kernel_pkg" ] || die "apt-cache knows no linux-image-amd64 (run apt-get update)"
kernel_version=$(apt-cache policy "$kernel_pkg" | sed -nE 's/^[[:space:]]*Candidate: (.+)$/\1/p')
[ -n "$kernel_version" ] && [ "$kernel_version" != "(none)" ] || die "no candidate version of $kernel_pkg"

key=$({
  echo "recipe=$recipe $kernel_pkg=$kernel_version $(go env GOVERSION) modules=${modules[*]}"
  cat "$here/go.mod" "$here/main.go" "${BASH_SOURCE[0]}"
} | sha256sum | cut -c1-16)
out=$cache/$key
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9
if [ ! -s "$out/initrd.img" ]; then
  work=$(mktemp -d "$cache/work.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "guest: fetching $kernel_pkg $kernel_version" >&2
  # apt-get download writes into the current folder; _apt cannot write to ours, which only
  # costs a warning (the download runs unsandboxed as the caller).
  (cd "$work" && apt-get download -q "$kernel_pkg=$kernel_version" >/dev/null 2>&1) ||
    die "apt-get download $kernel_pkg=$kernel_version failed"
  dpkg-deb -x "$work"/"$kernel_pkg"_*.deb "$work/pkg"
  root=$work/root
  mkdir -p "$root/lib/modules" "$root/dev" "$root/proc" "$root/sys"
  for m in "${modules[@]}"; do
    found=$(find "$work/pkg/lib/modules" -name "$m.ko" -print -quit)
    [ -n "$found" ] || die "$kernel_pkg has no $m.ko"
    cp "$found" "$root/lib/modules/"
  done
  echo "guest: building tandem-guest" >&2
  (cd "$here" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags='-s -w' -o "$root/init" .)
  mkdir -p "$work/out"
  cp "$work"/pkg/boot/vmlinuz-* "$work/out/vmlinuz"
  # newc is the format the kernel unpacks; sorted names and fixed owners keep it reproducible.
  (cd "$root" && find . -print | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -n -1 >"$work/out/initrd.img"
  echo "$kernel_pkg $kernel_version" >"$work/out/kernel-version"
  rm -rf "$out"
  mv "$work/out" "$out"
  # Older keys are of no further use.
  find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name 'work.*' -exec rm -rf {} +
fi
echo "$out"
