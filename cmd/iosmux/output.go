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

// jsonLine prints v as one line of JSON: the --json output of commands
// that stream (syslog, notify observe, crash watch), one object per event.
func jsonLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
