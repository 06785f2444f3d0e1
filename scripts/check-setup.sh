#!/usr/bin/env bash
# Checks that every install step of scripts/setup.sh works on a fresh machine,
# where nothing is cached: each pinned Go tool is installed from the module
# proxy into a new GOBIN and module cache and must print its pinned version,
# and the npm peers install from the lock file with an empty npm cache.
# (A tool already on this machine once hid a pin the proxy did not serve.)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pins.sh

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

for t in "${GO_TOOLS[@]}"; do
  IFS='|' read -r mod vercmd want <<<"$t"
  bin=${mod%@*}; bin=${bin##*/}
  echo "check-setup: go install $mod (fresh GOBIN and module cache)"
  GOBIN="$tmp/bin" GOMODCACHE="$tmp/mod" GOFLAGS=-modcacherw go install "$mod"
  got=$(PATH="$tmp/bin:$PATH" $vercmd 2>&1 || true)
  case "$got" in
    *"$want"*) echo "check-setup: $bin ok: $got" ;;
    *) echo "check-setup: $bin printed '$got', want '$want'" >&2; exit 1 ;;
  esac
done

echo "check-setup: npm ci of interop/ with an empty npm cache"
mkdir -p "$tmp/npm"
cp interop/package.json interop/package-lock.json "$tmp/npm/"
(cd "$tmp/npm" && npm ci --cache "$tmp/npm-cache" --no-audit --no-fund --loglevel=error >/dev/null)
test -d "$tmp/npm/node_modules/appium-ios-remotexpc" || { echo "check-setup: npm ci installed no appium-ios-remotexpc" >&2; exit 1; }
echo "check-setup: npm ok"
