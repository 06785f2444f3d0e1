#!/usr/bin/env bash
# Installs what the tests need and is missing: Debian packages, staticcheck,
# Go modules (main and interop) and the npm peers pinned in
# interop/package-lock.json. Safe to run again; it only adds what is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

# Go tools are pinned by module version in scripts/pins.sh;
# scripts/check-setup.sh installs each into a fresh GOBIN to keep them served.
. scripts/pins.sh

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have openssl      || need_apt+=(openssl)
have usbmuxd      || need_apt+=(usbmuxd)
have idevice_id   || need_apt+=(libimobiledevice-utils)
have ideviceimagemounter || need_apt+=(libimobiledevice-utils)  # interop/ddi
have ideviceinstaller || need_apt+=(ideviceinstaller)  # interop/apps
have idevicesyslog || need_apt+=(libimobiledevice-utils)  # interop/logs
have idevicecrashreport || need_apt+=(libimobiledevice-utils)  # interop/logs
have iproxy       || need_apt+=(libusbmuxd-tools)
# interop/launch drives Debian's lldb through iosmux debugserver
have lldb         || need_apt+=(lldb python3-lldb)
have ip           || need_apt+=(iproute2)
have unshare      || need_apt+=(util-linux)
have make         || need_apt+=(make)
have g++          || need_apt+=(g++ build-essential)
have python3      || need_apt+=(python3)   # node-gyp runs python
# inject/ (the macOS dylib) is syntax-checked with clang and its converter
# built under AddressSanitizer (dylib/inject_test.go): clang and its
# sanitizer runtimes.
have clang        || need_apt+=(clang)
if ! have clang || [ ! -e "$(clang -print-resource-dir 2>/dev/null)/lib/linux/libclang_rt.asan-$(uname -m).a" ]; then
  need_apt+=(libclang-rt-dev)
fi
# Node from another source (e.g. NodeSource) must not be replaced by Debian's.
have node         || need_apt+=(nodejs)
have npm          || need_apt+=(npm)
# cmd/iosmux's completion test sources the script the way a user's shell does
[ -f /usr/share/bash-completion/bash_completion ] || need_apt+=(bash-completion)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

export PATH="$(go env GOPATH)/bin:$PATH"
for t in "${GO_TOOLS[@]}"; do
  IFS='|' read -r mod vercmd want <<<"$t"
  if ! $vercmd 2>/dev/null | grep -qF "$want"; then
    echo "setup: installing $mod"
    go install "$mod"
  fi
done

go mod download
# interop/ and the small nested modules under it (peers pinned to the
# dependency versions they were built with) each have their own go.mod.
for m in $(find interop -name go.mod -not -path '*/node_modules/*'); do
  (cd "$(dirname "$m")" && go mod download)
done

# npm ci is exact to the lock file; skip it when node_modules already matches.
if [ ! -f interop/node_modules/.package-lock.json ] || ! cmp -s interop/package-lock.json interop/node_modules/.iosmux-lock; then
  echo "setup: installing npm peers (interop/package-lock.json)"
  (cd interop && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.iosmux-lock)
fi
