package syslog

import (
	"regexp"
	"slices"
)

// Filter selects lines on the host: the device sends every line to every
// client, so filtering is the host's job (syslog.md §3). The zero Filter
// passes everything; each set field must match.
type Filter struct {
	// Processes are process names; a line passes when its process is one
	// of them (for "Demo(UIKit)[12]" the process is Demo).
	Processes []string
	// PIDs are process ids; a line passes when its pid is one of them.
	PIDs []int
	// Match is applied to the whole decoded line.
	Match *regexp.Regexp
	// MinLevel passes lines at least this severe ("" passes all).
	MinLevel Level
}

// Empty reports whether the filter passes every line.
func (f *Filter) Empty() bool {
	return len(f.Processes) == 0 && len(f.PIDs) == 0 && f.Match == nil && f.MinLevel == ""
}

// Allow reports whether e passes. A line that did not parse passes only
// filters that need no field: Match alone.
func (f *Filter) Allow(e *Entry) bool {
	if !e.Parsed && (len(f.Processes) > 0 || len(f.PIDs) > 0 || f.MinLevel != "") {
		return false
	}
	if len(f.Processes) > 0 && !slices.Contains(f.Processes, e.Process) {
		return false
	}
	if len(f.PIDs) > 0 && !slices.Contains(f.PIDs, e.PID) {
		return false
	}
	if f.MinLevel != "" && e.Level.Severity() < f.MinLevel.Severity() {
		return false
	}
	if f.Match != nil && !f.Match.MatchString(e.Raw) {
		return false
	}
	return true
}
