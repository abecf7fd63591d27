#!/usr/bin/env bash
# Installs what the tests and the lab need, doing only what is missing, so it
# is cheap on a warm machine: Debian packages, npm packages (npm ci when the
# lock file changed), and the Go-built tools (kube-apiserver, etcd, kubectl,
# csi-sanity, CSI sidecars) and the data plane's native helper (tandem-fsutil)
# through their content-addressed cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

phase() { printf '\n== setup: %s\n' "$*" >&2; }

phase "Debian packages"
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^\s*$/d' scripts/debian-packages.txt | awk '{print $1}')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "all present" >&2
fi

phase "Node.js and npm packages"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 20 ] || { echo "setup: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2; exit 1; }
# `npm ci`: exactly what package-lock.json says, nothing resolved anew, and a
# refusal if the lock and package.json disagree. The lock lists every
# platform's optional builds (swc, esbuild, biome, jest's resolver), so it is
# the same on every machine. A stamp written after a successful install (the
# hash of package.json and the lock, and the Node version the install scripts
# ran under) skips it on a warm machine; any change installs again.
stamp=node_modules/.tandem-installed
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1) node-$(node --version)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  npm ci --no-audit --no-fund
  echo "$want" >"$stamp"
else
  echo "node_modules matches package-lock.json" >&2
fi

phase "Go-built tools"
command -v go >/dev/null || { echo "setup: Go >= 1.26 is required to build kube-apiserver, etcd, the CSI tools and tandem-fsutil" >&2; exit 1; }
bash test/tools/build.sh "$@"
bash scripts/build-native.sh
