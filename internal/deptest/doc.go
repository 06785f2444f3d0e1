// Package deptest has no code of its own; its test enforces the package
// layering of STYLE.md §11 over the whole module.
package deptest
