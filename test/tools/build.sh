#!/usr/bin/env bash
# Builds the real Kubernetes, CSI and Prometheus tools the tests run against, from the Go
# wrapper modules beside this script (pinned versions, committed go.sum).
#
# Each binary lands in a content-addressed cache outside the work tree
#   ${TANDEM_TOOLS_CACHE:-$XDG_CACHE_HOME/tandem/tools}/<name>-<key>/<name>
# keyed on the wrapper's go.mod, go.sum and the Go version, so a fresh clone on
# a warm machine reuses it, and a version bump rebuilds only what changed.
# <repo>/.cache/bin/<name> (git-ignored) links to the cached binary; the
# TypeScript harness looks there.
#
# usage: test/tools/build.sh [name ...]     (default: every tool)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${TANDEM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/tools}
bin="$repo/.cache/bin"
export GOTOOLCHAIN=local
export GOFLAGS=-mod=readonly
# Static binaries: the kubelet and its peers need no C library, and a static
# binary runs the same inside any node's mount namespace.
export CGO_ENABLED=0

# name | wrapper module folder | package to build | version variables to stamp
# (building from modules skips the projects' release scripts, which set them).
# @VERSION@, @MAJOR@ and @MINOR@ become the version of the package's module as
# pinned in the wrapper's go.mod, so a bump there is the only edit needed.
# @RELEASE@ is the release that version stands for: Prometheus 3.x tags its Go
# module v0.3xx.y for release 3.xx.y (v0.316.0 is 3.16.0); other modules keep it as is.
k8s_stamp="-X k8s.io/component-base/version.gitVersion=@VERSION@ -X k8s.io/component-base/version.gitMajor=@MAJOR@ -X k8s.io/component-base/version.gitMinor=@MINOR@ -X k8s.io/component-base/version.gitTreeState=clean"
tools=(
  "etcd|etcd|go.etcd.io/etcd/server/v3|"
  "kube-apiserver|kube|k8s.io/kubernetes/cmd/kube-apiserver|$k8s_stamp"
  "kubectl|kube|k8s.io/kubernetes/cmd/kubectl|$k8s_stamp"
  "kubelet|kube|k8s.io/kubernetes/cmd/kubelet|$k8s_stamp"
  "kube-controller-manager|kube|k8s.io/kubernetes/cmd/kube-controller-manager|$k8s_stamp"
  "kube-scheduler|kube|k8s.io/kubernetes/cmd/kube-scheduler|$k8s_stamp"
  "kube-proxy|kube|k8s.io/kubernetes/cmd/kube-proxy|$k8s_stamp"
  "csi-sanity|csi-sanity|github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity|-X main.VERSION=@VERSION@"
  "csi-provisioner|csi-provisioner|github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner|-X main.version=@VERSION@"
  "csi-attacher|csi-attacher|github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher|-X main.version=@VERSION@"
  "csi-resizer|csi-resizer|github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer|-X main.version=@VERSION@"
  "promtool|promtool|github.com/prometheus/prometheus/cmd/promtool|-X github.com/prometheus/common/version.Version=@RELEASE@ -X github.com/prometheus/common/version.Branch=HEAD"
)

command -v go >/dev/null || { echo "build.sh: Go is not installed (need Go >= 1.25)" >&2; exit 1; }
mkdir -p "$cache" "$bin"
wanted=("$@")

is_wanted() {
  [ ${#wanted[@]} -eq 0 ] && return 0
  local w
  for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

for w in "${wanted[@]}"; do
  printf '%s\n' "${tools[@]}" | grep -q "^$w|" || { echo "build.sh: unknown tool '$w'" >&2; exit 2; }
done

go_version=$(go env GOVERSION)
for entry in "${tools[@]}"; do
  IFS='|' read -r name dir pkg stamp <<<"$entry"
  version=$(cd "$here/$dir" && go list -m -f '{{.Version}}' "$(go list -f '{{.Module.Path}}' "$pkg")")
  major=${version#v}; major=${major%%.*}
  minor=${version#v*.}; minor=${minor%%.*}
  release=$version
  if [[ $pkg == github.com/prometheus/prometheus/* && $version =~ ^v0\.([1-9][0-9]*)([0-9]{2})\.([0-9]+)$ ]]; then
    release="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}"
  fi
  stamp=${stamp//@VERSION@/$version}; stamp=${stamp//@MAJOR@/$major}; stamp=${stamp//@MINOR@/$minor}
  stamp=${stamp//@RELEASE@/$release}
  is_wanted "$name" || continue
  key=$( { echo "$go_version cgo=$CGO_ENABLED $pkg $stamp"; cat "$here/$dir/go.mod" "$here/$dir/go.sum"; } | sha256sum | cut -c1-16)
  out="$cache/$name-$key/$name"
  if [ ! -x "$out" ]; then
    echo "build.sh: building $name $version ($pkg); with a cold Go cache this takes minutes" >&2
    start=$(date +%s)
    mkdir -p "$(dirname "$out")"
    (cd "$here/$dir" && go build -trimpath -ldflags="-s -w $stamp" -o "$out.tmp" "$pkg")
    mv "$out.tmp" "$out"
    echo "build.sh: built $name in $(( $(date +%s) - start ))s" >&2
  fi
  ln -sfn "$out" "$bin/$name"
  # Drop builds of this tool that no wrapper version points to any more.
  for old in "$cache/$name"-*; do
    [ "$old" = "$cache/$name-$key" ] || rm -rf "$old"
  done
done
echo "build.sh: tools ready in $bin" >&2
