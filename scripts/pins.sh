# Sourced by scripts/setup.sh and scripts/check-setup.sh: the Go tools the
# tests run, pinned by *module* version (the module proxy serves module
# versions only; staticcheck's release 2026.2.2 is module v0.8.2), each with
# the text its version command prints when the right one is installed.
GO_TOOLS=(
  "honnef.co/go/tools/cmd/staticcheck@v0.8.2|staticcheck -version|(0.8.2)"
)
