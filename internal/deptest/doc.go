// Package deptest has no code of its own; its tests hold the repository to
// its layout (tailscale's tstest/deptest is the model): every package sits
// in a layer of the README's layout table and imports only its own layer
// (in the layer's order) or lower; third-party packages are imported only
// where they belong; both for GOOS=linux and darwin; no entry of the map is
// stale, and the README's table agrees with the map (deptest_test.go). The
// citation test checks that every citation in the repository names a file
// (and section) it holds (citations_test.go).
package deptest
