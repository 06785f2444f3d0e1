package main

import (
	"encoding/json"
	"io"
)

// writeJSON prints v as indented JSON followed by a newline: the --json
// output of every command.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
