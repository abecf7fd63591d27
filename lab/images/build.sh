#!/usr/bin/env bash
# Builds every container image the lab's real kubelets run, on this machine: no registry is
# reachable and there is no Docker engine, so nothing is pulled. Each image ends up as an OCI
# archive that `ctr -n k8s.io images import` accepts:
#
#   tandem    Tandem's image from the real Dockerfile, built by buildah (vfs storage, chroot
#             isolation) against local stand-ins for its two base images:
#               localhost/node:22-bookworm-slim   Debian bookworm minbase + this machine's Node.js
#                                                 (Node 20, not 22: see the image's labels)
#               localhost/golang:1.26-bookworm    Debian bookworm minbase + this machine's Go
#             Both share one mmdebstrap rootfs that uses this machine's Debian mirror and apt
#             settings; the node stand-in also carries its npm settings and CA bundle, so the
#             Dockerfile's own apt-get and npm ci reach the same mirrors the host does.
#   launcher  localhost/tandem-launcher:<key>, QEMU and the built-in guest (lab/images/guest), what
#             the VM launcher pods run (lab/vm/launcher.ts).
#   pause     localhost/tandem-pause:1, the sandbox image (lab/images/pause, static Go).
#   sidecars  the CSI sidecars of manifests/driver/controller.yaml, tagged with exactly the
#             manifest's references, each one layer holding the static binary that
#             test/tools/build.sh built.
#
# Everything is keyed on its inputs and cached under
#   ${TANDEM_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/images}
# (archives, the stand-ins' rootfs and a dedicated buildah storage); a run with nothing changed
# takes seconds. Archives of older keys are pruned. The result is described in images.json in
# that folder, whose path is the last line printed on stdout; progress goes to stderr.
#
# usage: lab/images/build.sh          (as root: buildah's vfs storage and chroot isolation)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${TANDEM_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/images}
bin=${TANDEM_BIN_DIR:-$repo/.cache/bin}
# Bumped whenever this script changes how an image is made, so cached results are not reused.
recipe=1
# The CSI sidecars the controller Deployment runs (the node plugin's registrar and the liveness
# probe are not served by the module proxy and are not built here).
sidecars=(csi-provisioner csi-attacher csi-resizer)
node_ref=localhost/node:22-bookworm-slim
golang_ref=localhost/golang:1.26-bookworm
pause_ref=localhost/tandem-pause:1

started=$(date +%s%N)
log() {
  local now
  now=$(date +%s%N)
  printf 'images: [%6.1fs] %s\n' "$(((now - started) / 1000000))e-3" "$*" >&2
}
die() {
  echo "images: error: $*" >&2
  exit 1
}
# Runs a step and logs how long it took.
timed() {
  local what=$1 t0 t1
  shift
  t0=$(date +%s%N)
  # Explicit status: callers test it in `if`, where set -e does not apply.
  "$@" || return
  t1=$(date +%s%N)
  log "$what took $(((t1 - t0) / 1000000000)) s"
}
short_hash() { sha256sum | cut -c1-16; }

[ "$(id -u)" = 0 ] || die "run as root (buildah's vfs storage and chroot isolation need it)"
for tool in buildah mmdebstrap go node npm tar flock sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/debian-packages.txt lists the packages)"
done

mkdir -p "$cache"
exec 9>"$cache/lock"
if ! flock -n 9; then
  log "another build holds $cache/lock; waiting for it"
  flock 9
fi

# buildah gets its own storage, configuration and temporary space under the cache, so nothing
# lands in /var/lib/containers or /var/tmp, and the host's registries.conf plays no part.
store=$cache/storage
tmp=$cache/tmp
rm -rf "$tmp"
mkdir -p "$store" "$tmp"
export TMPDIR=$tmp
export CONTAINERS_REGISTRIES_CONF=$cache/registries.conf
export BUILDAH_ISOLATION=chroot
cat >"$CONTAINERS_REGISTRIES_CONF" <<'EOF'
# Written by lab/images/build.sh. No registry is reachable here: short names such as
# node:22-bookworm-slim resolve to localhost/..., the stand-ins in this cache's storage.
unqualified-search-registries = ["localhost"]
short-name-mode = "permissive"
EOF
policy=$cache/policy.json
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$policy"
bah() { buildah --root "$store/root" --runroot "$store/runroot" --storage-driver vfs "$@"; }

# As root, buildah keeps a blob-info cache in /var/lib/containers/cache and has no flag to move
# it. When that folder did not exist before this run, what buildah put there is removed again.
varlib=/var/lib/containers
varlib_existed=false
[ -e "$varlib" ] && varlib_existed=true

cleanup() {
  if ! $varlib_existed; then
    rm -f "$varlib"/cache/blob-info-cache-v1.*
    rmdir "$varlib/cache" "$varlib" 2>/dev/null || true
  fi
  # Working containers of an interrupted run would pin their images; nothing else uses this
  # storage, and we hold the lock.
  bah rm --all >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
bah rm --all >/dev/null 2>&1 || true

# Every archive this run decides on; anything else of ours in the cache is pruned at the end.
keep=()

# ---------------------------------------------------------------------------------------------
# The Debian rootfs both stand-ins are made of, from this machine's apt sources and settings.

apt_sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && apt_sources+=("$f")
done
[ ${#apt_sources[@]} -gt 0 ] || die "no apt sources on this machine (/etc/apt/sources.list{,.d})"
# The apt settings that decide how the mirror is reached: proxies, authentication, TLS, validity
# checks of snapshot mirrors (all Acquire:: options), and apt's credential files.
apt_confs=()
for f in /etc/apt/apt.conf.d/*; do
  [ -f "$f" ] && grep -qs 'Acquire::' "$f" && apt_confs+=("$f")
done
apt_auth=()
for f in /etc/apt/auth.conf /etc/apt/auth.conf.d/*; do
  [ -f "$f" ] && apt_auth+=("$f")
done

rootfs_key=$(
  {
    echo "recipe=$recipe mmdebstrap minbase bookworm $(mmdebstrap --version)"
    for f in "${apt_sources[@]}" "${apt_confs[@]}" "${apt_auth[@]}"; do
      echo "$f"
      cat "$f"
    done
  } | short_hash
)
rootfs=$cache/rootfs-$rootfs_key.tar
keep+=("$rootfs")
if [ ! -s "$rootfs" ]; then
  log "making the Debian bookworm minbase rootfs with mmdebstrap (about 30 s)"
  aptopts=()
  for f in "${apt_confs[@]}"; do aptopts+=("--aptopt=$f"); done
  timed "mmdebstrap" mmdebstrap --quiet --variant=minbase --format=tar "${aptopts[@]}" \
    bookworm "$rootfs.tmp" "${apt_sources[@]}"
  mv "$rootfs.tmp" "$rootfs"
fi

# Unpacks the rootfs into a stand-in's working container and gives it this machine's apt
# sources and settings under their own names (mmdebstrap's copies are replaced) and its CA bundle.
prepare_rootfs() {
  local mnt=$1 f keyring
  tar -xf "$rootfs" -C "$mnt" --numeric-owner
  rm -f "$mnt/etc/apt/sources.list" "$mnt"/etc/apt/sources.list.d/* "$mnt/etc/apt/apt.conf.d/99mmdebstrap"
  for f in "${apt_sources[@]}" "${apt_confs[@]}" "${apt_auth[@]}"; do
    mkdir -p "$mnt$(dirname "$f")"
    cp -p "$f" "$mnt$f"
  done
  # A source signed by a keyring the rootfs lacks (a third-party repository) takes the host's.
  for keyring in $(sed -nE 's/.*(Signed-By:|signed-by=)[[:space:]]*([^] ]+).*/\2/p' "${apt_sources[@]}"); do
    if [ -f "$keyring" ] && [ ! -e "$mnt$keyring" ]; then
      mkdir -p "$mnt$(dirname "$keyring")"
      cp -p "$keyring" "$mnt$keyring"
    fi
  done
  mkdir -p "$mnt/etc/ssl/certs"
  cp "$host_ca" "$mnt/etc/ssl/certs/ca-certificates.crt"
}

host_ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$host_ca" ] || die "$host_ca is missing (package ca-certificates)"
ca_hash=$(short_hash <"$host_ca")

# Prints the id of a stand-in image if it exists in the storage and was made from the inputs
# with this key (the key is kept in a stamp file beside the storage).
standin_id() {
  local name=$1 key=$2 ref=$3 stamp=$cache/standin-$1.key id
  [ -f "$stamp" ] || return 0
  read -r stamped_key id <"$stamp" || return 0
  [ "$stamped_key" = "$key" ] || return 0
  [ "$(bah images --quiet --no-trunc "$ref" 2>/dev/null | head -n1)" = "$id" ] && echo "$id"
  return 0
}

# Commits a stand-in's working container and records the key it was made from.
commit_standin() {
  local name=$1 key=$2 ref=$3 ctr=$4 id
  bah commit --quiet --rm "$ctr" "$ref" >/dev/null
  id=$(bah images --quiet --no-trunc "$ref" | head -n1)
  echo "$key $id" >"$cache/standin-$name.key"
  echo "$id"
}

# ---------------------------------------------------------------------------------------------
# localhost/node:22-bookworm-slim: the rootfs, this machine's Node.js and npm, a "node" user.

node_bin=$(command -v node)
node_bin=$(readlink -f "$node_bin")
node_version=$(node --version)
npm_dir=$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)
npm_version=$(npm --version)
npm_registry=$(npm config get registry)
# npm_config_* variables set on this machine configure npm too. Under npm itself (npx jest, npm
# run) npm exports its whole resolved configuration that way, host paths included: that is the
# npmrc files copied below, not settings of the machine, so it is left out and the key stays the
# same however this script is started.
npm_env=()
if [ -z "${npm_command:-}${npm_execpath:-}" ]; then
  while IFS= read -r line; do npm_env+=("$line"); done < <(env | grep -iE '^npm_config_' | LC_ALL=C sort || true)
fi
# npm reads its global npmrc from <prefix>/etc/npmrc, its user npmrc from ~/.npmrc, and some
# installs also read /etc/npmrc: the stand-in gets each the host has, at the same path (the Dockerfile
# runs npm ci as root, so the host user's ~/.npmrc becomes root's).
npm_prefix=$(dirname "$(dirname "$node_bin")")
npmrcs=()
for f in "$npm_prefix/etc/npmrc" /etc/npmrc "$HOME/.npmrc"; do
  [ -f "$f" ] && npmrcs+=("$f")
done
node_key=$(
  {
    echo "recipe=$recipe rootfs=$rootfs_key ca=$ca_hash node=$node_version npm=$npm_version"
    echo "registry=$npm_registry"
    printf '%s\n' "${npm_env[@]}"
    sha256sum "$node_bin"
    find "$npm_dir" -type f -printf '%P %s %T@\n' | LC_ALL=C sort
    for f in "${npmrcs[@]}"; do
      echo "$f"
      cat "$f"
    done
  } | short_hash
)
node_id=$(standin_id node "$node_key" "$node_ref")
if [ -z "$node_id" ]; then
  log "making $node_ref (rootfs + this machine's Node.js $node_version)"
  t0=$(date +%s)
  ctr=$(bah from --quiet --pull=never scratch)
  mnt=$(bah mount "$ctr")
  prepare_rootfs "$mnt"
  cp -p "$node_bin" "$mnt/usr/bin/node"
  mkdir -p "$mnt/usr/lib/node_modules"
  cp -a "$npm_dir" "$mnt/usr/lib/node_modules/npm"
  ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/bin/npm"
  ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/bin/npx"
  # As the official image: uid/gid 1000 "node" with a home (the Dockerfile runs as 1000:1000).
  chroot "$mnt" groupadd --gid 1000 node
  chroot "$mnt" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  for f in "${npmrcs[@]}"; do
    case $f in
      "$HOME/.npmrc") dest=/root/.npmrc ;;
      "$npm_prefix/etc/npmrc") dest=/usr/etc/npmrc ;;
      *) dest=$f ;;
    esac
    mkdir -p "$mnt$(dirname "$dest")"
    cp "$f" "$mnt$dest"
  done
  if ! grep -qsE '^[[:space:]]*registry[[:space:]]*=' "$mnt/usr/etc/npmrc"; then
    mkdir -p "$mnt/usr/etc"
    echo "registry=$npm_registry" >>"$mnt/usr/etc/npmrc"
  fi
  bah umount "$ctr" >/dev/null
  config=(
    --env NODE_VERSION="${node_version#v}"
    --env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
    --cmd '["node"]'
    --label "org.opencontainers.image.title=stand-in for node:22-bookworm-slim"
    --label "org.opencontainers.image.description=Debian bookworm (mmdebstrap minbase) with this machine's Node.js $node_version and npm $npm_version; not Node 22 (Tandem is tested on Node >= 20)"
    --label "dev.tandem.stand-in.node-version=$node_version"
  )
  for e in "${npm_env[@]}"; do config+=(--env "$e"); done
  bah config "${config[@]}" "$ctr"
  node_id=$(commit_standin node "$node_key" "$node_ref" "$ctr")
  log "made $node_ref in $(($(date +%s) - t0)) s"
fi

# ---------------------------------------------------------------------------------------------
# localhost/golang:1.26-bookworm: the rootfs and this machine's Go toolchain at /usr/local/go.

goroot=$(go env GOROOT)
go_version=$(go env GOVERSION)
golang_key=$(
  {
    echo "recipe=$recipe rootfs=$rootfs_key ca=$ca_hash go=$go_version"
    sha256sum "$goroot/bin/go"
  } | short_hash
)
golang_id=$(standin_id golang "$golang_key" "$golang_ref")
if [ -z "$golang_id" ]; then
  log "making $golang_ref (rootfs + this machine's $go_version)"
  t0=$(date +%s)
  ctr=$(bah from --quiet --pull=never scratch)
  mnt=$(bah mount "$ctr")
  prepare_rootfs "$mnt"
  mkdir -p "$mnt/usr/local" "$mnt/go"
  cp -a "$goroot" "$mnt/usr/local/go"
  bah umount "$ctr" >/dev/null
  bah config \
    --env GOLANG_VERSION="${go_version#go}" \
    --env GOTOOLCHAIN=local \
    --env GOPATH=/go \
    --env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --workingdir /go \
    --cmd '["bash"]' \
    --label "org.opencontainers.image.title=stand-in for golang:1.26-bookworm" \
    --label "org.opencontainers.image.description=Debian bookworm (mmdebstrap minbase) with this machine's Go toolchain ($go_version)" \
    --label "dev.tandem.stand-in.go-version=$go_version" \
    "$ctr"
  golang_id=$(commit_standin golang "$golang_key" "$golang_ref" "$ctr")
  log "made $golang_ref in $(($(date +%s) - t0)) s"
fi

# ---------------------------------------------------------------------------------------------
# Tandem's image from the real Dockerfile.

dockerfile=$repo/Dockerfile
# The build context paths the Dockerfile copies (COPY without --from), so that an edit to any
# of them, committed or not, changes the key.
mapfile -t copy_paths < <(awk '
  toupper($1) == "COPY" && $0 !~ /--from=/ {
    if ($2 ~ /^\[/) { print "JSON-form COPY is not supported: " $0 > "/dev/stderr"; exit 1 }
    for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i
  }' "$dockerfile")
[ ${#copy_paths[@]} -gt 0 ] || die "found no COPY lines in $dockerfile"
# Tracked files plus untracked ones git does not ignore, read from the working tree.
list_context_files() {
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$repo" ls-files -z --cached --others --exclude-standard -- "${copy_paths[@]}"
  else
    (cd "$repo" && find "${copy_paths[@]}" \( -type f -o -type l \) -print0)
  fi
}
tandem_key=$(
  {
    echo "recipe=$recipe buildah=$(buildah --version) node=$node_id golang=$golang_id"
    cd "$repo"
    # tsconfig*.json as a glob as well: a new one the Dockerfile does not copy yet still counts.
    sha256sum Dockerfile package.json package-lock.json tsconfig*.json
    list_context_files | LC_ALL=C sort -zu | while IFS= read -r -d '' f; do
      # Deleted but still tracked: not in the context, so not in the key.
      [ -e "$f" ] && printf '%s\0' "$f"
    done | xargs -0 -r sha256sum
  } | short_hash
)
tandem_ref=localhost/tandem:$tandem_key
tandem_archive=$cache/tandem-$tandem_key.tar
keep+=("$tandem_archive")
if [ ! -s "$tandem_archive" ]; then
  log "building $tandem_ref from $dockerfile with buildah (about 2 min)"
  # The build's output (apt, npm, tsc) goes to a log file; its tail is shown when it fails.
  build_log=$cache/tandem-build.log
  build() {
    bah build --isolation chroot --pull=never --signature-policy "$policy" \
      --label "dev.tandem.build-key=$tandem_key" -f "$dockerfile" -t "$tandem_ref" "$repo" >"$build_log" 2>&1
  }
  if ! timed "buildah build" build; then
    tail -n 40 "$build_log" >&2
    die "buildah build failed; the whole log is $build_log"
  fi
  timed "writing $tandem_archive" bah push --quiet --signature-policy "$policy" \
    "$tandem_ref" "oci-archive:$tandem_archive.tmp:$tandem_ref"
  mv "$tandem_archive.tmp" "$tandem_archive"
fi
# Older builds of Tandem are of no further use; the stand-ins stay.
while read -r old; do
  [ "$old" = "$tandem_ref" ] || bah rmi "$old" >/dev/null
done < <(bah images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/tandem:' || true)
bah rmi --prune >/dev/null 2>&1 || true

# ---------------------------------------------------------------------------------------------
# The VM launcher image, localhost/tandem-launcher:<key>: what the lab's and the tests' stand-in
# for KubeVirt's virt-launcher runs. Debian's QEMU (qemu-system-x86, installed with apt-get
# inside the node stand-in, the same way the Dockerfile installs its packages) and the built-in
# guest (lab/images/guest: Debian's kernel and an initramfs with tandem-guest) at /guest. The
# pod's command is QEMU itself (lab/vm/launcher.ts builds it), as virt-launcher's is its
# libvirt-managed QEMU.

guest_dir=$("$here/guest/build.sh" | tail -n1)
[ -s "$guest_dir/vmlinuz" ] && [ -s "$guest_dir/initrd.img" ] || die "the guest build did not produce $guest_dir/vmlinuz and initrd.img"
qemu_version=$(apt-cache policy qemu-system-x86 | sed -nE 's/^[[:space:]]*Candidate: (.+)$/\1/p')
[ -n "$qemu_version" ] || die "apt-cache knows no qemu-system-x86 (run apt-get update)"
launcher_key=$(
  {
    echo "recipe=$recipe node=$node_id qemu=$qemu_version"
    sha256sum "$guest_dir/vmlinuz" "$guest_dir/initrd.img" | cut -d' ' -f1
  } | short_hash
)
launcher_ref=localhost/tandem-launcher:$launcher_key
launcher_archive=$cache/launcher-$launcher_key.tar
keep+=("$launcher_archive")
if [ ! -s "$launcher_archive" ]; then
  log "building $launcher_ref (QEMU $qemu_version and the guest)"
  t0=$(date +%s)
  ctr=$(bah from --quiet --pull=never "$node_ref")
  launcher_log=$cache/launcher-build.log
  if ! bah run "$ctr" -- sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86=$qemu_version && rm -rf /var/lib/apt/lists/*" >"$launcher_log" 2>&1; then
    tail -n 30 "$launcher_log" >&2
    die "installing QEMU into the launcher image failed; the whole log is $launcher_log"
  fi
  mnt=$(bah mount "$ctr")
  mkdir -p "$mnt/guest"
  cp "$guest_dir/vmlinuz" "$guest_dir/initrd.img" "$guest_dir/kernel-version" "$mnt/guest/"
  bah umount "$ctr" >/dev/null
  bah config \
    --cmd '["qemu-system-x86_64","--version"]' \
    --label "org.opencontainers.image.title=tandem-launcher" \
    --label "org.opencontainers.image.description=QEMU $qemu_version and Tandem's test guest ($(cat "$guest_dir/kernel-version")), the lab's stand-in for KubeVirt's virt-launcher" \
    --label "dev.tandem.build-key=$launcher_key" \
    "$ctr"
  bah commit --quiet --rm "$ctr" "$launcher_ref" >/dev/null
  timed "writing $launcher_archive" bah push --quiet --signature-policy "$policy" \
    "$launcher_ref" "oci-archive:$launcher_archive.tmp:$launcher_ref"
  mv "$launcher_archive.tmp" "$launcher_archive"
  log "made $launcher_ref in $(($(date +%s) - t0)) s"
fi
while read -r old; do
  [ "$old" = "$launcher_ref" ] || bah rmi "$old" >/dev/null
done < <(bah images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/tandem-launcher:' || true)
bah rmi --prune >/dev/null 2>&1 || true

# ---------------------------------------------------------------------------------------------
# One-layer images made by hand: an OCI image layout in a tar (oci-layout, index.json and the
# blobs), which is all `ctr images import` needs. Reproducible: fixed times and owners.

goarch=$(go env GOARCH)
repro_tar() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime "$@"; }
# Writes a blob into the layout and sets blob_digest and blob_size.
add_blob() {
  local layout=$1 file=$2
  blob_digest=sha256:$(sha256sum "$file" | cut -d' ' -f1)
  blob_size=$(stat -c %s "$file")
  mv "$file" "$layout/blobs/sha256/${blob_digest#sha256:}"
}
# make_image <ref> <archive> <rootdir> <config JSON of the "config" field>
make_image() {
  local ref=$1 archive=$2 root=$3 config=$4 layout layer_digest layer_size config_digest config_size
  [[ $ref =~ ^[a-z0-9][a-z0-9./:_-]*$ ]] || die "unexpected image reference '$ref'"
  layout=$(mktemp -d "$tmp/layout.XXXXXX")
  mkdir -p "$layout/blobs/sha256"
  (cd "$root" && repro_tar -cf "$layout/layer.tar" -- *)
  add_blob "$layout" "$layout/layer.tar"
  layer_digest=$blob_digest layer_size=$blob_size
  printf '{"created":"1970-01-01T00:00:00Z","architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"lab/images/build.sh"}]}' \
    "$goarch" "$config" "$layer_digest" >"$layout/config.json"
  add_blob "$layout" "$layout/config.json"
  config_digest=$blob_digest config_size=$blob_size
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$layout/manifest.json"
  add_blob "$layout" "$layout/manifest.json"
  # containerd names the imported image after io.containerd.image.name, other tools after the
  # OCI ref name: both carry the full reference.
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$blob_digest" "$blob_size" "$goarch" "$ref" "$ref" >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  (cd "$layout" && repro_tar -cf "$archive.tmp" oci-layout index.json blobs)
  mv "$archive.tmp" "$archive"
  rm -rf "$layout"
}

# The pause (sandbox) image: our own static program as PID 1.
pause_key=$(
  {
    echo "recipe=$recipe $go_version $goarch $pause_ref"
    cat "$here/pause/go.mod" "$here/pause/main.go"
  } | short_hash
)
pause_archive=$cache/pause-$pause_key.tar
keep+=("$pause_archive")
if [ ! -s "$pause_archive" ]; then
  log "building $pause_ref"
  root=$(mktemp -d "$tmp/pause.XXXXXX")
  (cd "$here/pause" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags='-s -w' -o "$root/pause" .)
  # The upstream pause image runs as 65535 too: it needs no rights at all.
  make_image "$pause_ref" "$pause_archive" "$root" \
    '{"Entrypoint":["/pause"],"User":"65535:65535","WorkingDir":"/","Labels":{"org.opencontainers.image.title":"tandem-pause","org.opencontainers.image.source":"lab/images/pause"}}'
  rm -rf "$root"
fi

# The CSI sidecars, as upstream's images: the binary at /<name>, entrypoint ["/<name>"].
controller_yaml=$repo/manifests/driver/controller.yaml
sidecar_refs=()
sidecar_archives=()
for name in "${sidecars[@]}"; do
  mapfile -t refs < <(sed -nE "s#^[[:space:]]*image:[[:space:]]*[\"']?([^\"'[:space:]]*/$name:[^\"'[:space:]]+)[\"']?[[:space:]]*\$#\\1#p" "$controller_yaml" | sort -u)
  [ ${#refs[@]} -eq 1 ] || die "expected one image reference for $name in $controller_yaml, found ${#refs[@]}"
  ref=${refs[0]}
  binary=$bin/$name
  [ -x "$binary" ] || die "$name is not built: run test/tools/build.sh $name (or make setup)"
  key=$({
    echo "recipe=$recipe $ref"
    sha256sum <"$binary"
  } | short_hash)
  archive=$cache/sidecar-$name-$key.tar
  keep+=("$archive")
  if [ ! -s "$archive" ]; then
    log "building $ref"
    root=$(mktemp -d "$tmp/$name.XXXXXX")
    cp "$(readlink -f "$binary")" "$root/$name"
    chmod 0755 "$root/$name"
    mkdir -m 1777 "$root/tmp"
    make_image "$ref" "$archive" "$root" \
      "{\"Entrypoint\":[\"/$name\"],\"WorkingDir\":\"/\",\"Labels\":{\"org.opencontainers.image.title\":\"$name\",\"org.opencontainers.image.source\":\"test/tools/$name\"}}"
    rm -rf "$root"
  fi
  sidecar_refs+=("$ref")
  sidecar_archives+=("$archive")
done

# ---------------------------------------------------------------------------------------------
# Prune what older keys left, then describe the result.

for f in "$cache"/rootfs-*.tar "$cache"/tandem-*.tar "$cache"/launcher-*.tar "$cache"/pause-*.tar "$cache"/sidecar-*.tar "$cache"/*.tar.tmp; do
  [ -e "$f" ] || continue
  printf '%s\n' "${keep[@]}" | grep -qxF "$f" && continue
  log "pruning $f"
  rm -f "$f"
done

for f in "$tandem_archive" "$launcher_archive" "$pause_archive" "${sidecar_archives[@]}"; do
  [[ $f != *[\"\\]* ]] || die "the cache path must not contain quotes or backslashes: $f"
done
sidecars_json=
for i in "${!sidecar_refs[@]}"; do
  [ -z "$sidecars_json" ] || sidecars_json+=', '
  sidecars_json+="{\"ref\": \"${sidecar_refs[$i]}\", \"archive\": \"${sidecar_archives[$i]}\"}"
done
images_json=$cache/images.json
printf '{\n  "tandem": {"ref": "%s", "archive": "%s"},\n  "launcher": {"ref": "%s", "archive": "%s"},\n  "pause": {"ref": "%s", "archive": "%s"},\n  "sidecars": [%s]\n}\n' \
  "$tandem_ref" "$tandem_archive" "$launcher_ref" "$launcher_archive" "$pause_ref" "$pause_archive" "$sidecars_json" >"$images_json.tmp"
mv "$images_json.tmp" "$images_json"
log "images ready: $tandem_ref, $launcher_ref, $pause_ref, ${sidecar_refs[*]}"
echo "$images_json"
