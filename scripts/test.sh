#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what is missing, then runs
# every check. FUZZTIME bounds each fuzz target (default 5s).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$(go env GOPATH)/bin:$PATH"
FUZZTIME=${FUZZTIME:-5s}

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
bad=$(gofmt -l $(git ls-files '*.go') 2>/dev/null || true)
if [ -n "$bad" ]; then echo "gofmt needed:"; echo "$bad"; exit 1; fi

step "go vet"
go vet ./...
(cd interop && go vet ./...)

step "GOOS=darwin go vet"
GOOS=darwin go vet ./...

step "staticcheck"
staticcheck ./...
(cd interop && staticcheck ./...)

step "go test -race"
go test -race -timeout 20m ./...

step "fuzz (${FUZZTIME} each)"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $pkg $f"
    go test -run '^$' -fuzz "^${f}\$" -fuzztime "$FUZZTIME" "$pkg"
  done
done

step "interop (third-party peers)"
(cd interop && go test -race -count=1 -timeout 20m ./...)

echo
echo "all checks passed"
