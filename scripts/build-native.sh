#!/usr/bin/env bash
# Builds the data plane's native helper, tandem-fsutil (driver/native/fsutil,
# Go standard library only), the way test/tools/build.sh builds the Go tools:
# into a content-addressed cache outside the work tree
#   ${TANDEM_TOOLS_CACHE:-$XDG_CACHE_HOME/tandem/tools}/tandem-fsutil-<key>/tandem-fsutil
# keyed on go.mod, the Go sources and the Go version, linked at
# <repo>/.cache/bin/tandem-fsutil, where driver/replica/fsutil.ts looks.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$repo/driver/native/fsutil"
cache=${TANDEM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/tools}
bin="$repo/.cache/bin"
name=tandem-fsutil
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

command -v go >/dev/null || { echo "build-native.sh: Go is not installed (need Go >= 1.26)" >&2; exit 1; }
mkdir -p "$cache" "$bin"

# Tests are not part of the binary, so editing them does not force a rebuild.
key=$( { go env GOVERSION; cat "$src/go.mod"; find "$src" -maxdepth 1 -name '*.go' ! -name '*_test.go' -print0 | sort -z | xargs -0 cat; } | sha256sum | cut -c1-16)
out="$cache/$name-$key/$name"
if [ ! -x "$out" ]; then
  echo "build-native.sh: building $name" >&2
  mkdir -p "$(dirname "$out")"
  (cd "$src" && go build -trimpath -ldflags="-s -w" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
fi
ln -sfn "$out" "$bin/$name"
# Drop builds no source version points to any more.
for old in "$cache/$name"-*; do
  [ "$old" = "$cache/$name-$key" ] || rm -rf "$old"
done
echo "build-native.sh: $name ready in $bin" >&2
