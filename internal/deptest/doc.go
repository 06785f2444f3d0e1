// Package deptest has no code of its own; its test enforces the package
// layering of the README's layout table over the whole module, and that
// every citation in the repository names a file (and section) it holds
// (citations_test.go).
package deptest
