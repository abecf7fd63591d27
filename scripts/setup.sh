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
# npm writes node_modules/.package-lock.json on every install; when it is
# newer than package-lock.json, node_modules matches the lock file.
# `npm install` rather than `npm ci`: the registry these machines reach has no
# metadata for some per-platform optional packages (other OSes' builds of
# @swc/core and of jest's resolver), so the lock file cannot list them and
# `npm ci` refuses it. `npm install` installs exactly the locked versions; the
# check after it fails the run if it changed the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  lock_before=$(sha256sum package-lock.json)
  npm install --no-audit --no-fund
  if [ "$(sha256sum package-lock.json)" != "$lock_before" ]; then
    echo "setup: npm install changed package-lock.json; run npm install and commit the lock file" >&2
    exit 1
  fi
else
  echo "node_modules up to date" >&2
fi

phase "Go-built tools"
command -v go >/dev/null || { echo "setup: Go >= 1.26 is required to build kube-apiserver, etcd, the CSI tools and tandem-fsutil" >&2; exit 1; }
bash test/tools/build.sh "$@"
bash scripts/build-native.sh
