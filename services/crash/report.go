package crash

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Header is the first line of an .ips report, a JSON object (crash.md §3).
// Only the keys hosts read are kept.
type Header struct {
	BugType    string `json:"bug_type"`
	Name       string `json:"name"`
	Timestamp  string `json:"timestamp"`
	IncidentID string `json:"incident_id"`
	OSVersion  string `json:"os_version"`
	BundleID   string `json:"bundleID,omitempty"`
}

// MaxHeader bounds the first line of a report.
const MaxHeader = 64 << 10

// ErrReport marks a report whose first line is not a JSON object.
var ErrReport = errors.New("crash: not an .ips report")

// ParseHeader reads a report's first line. body is what follows the
// newline (JSON in modern reports, kept as bytes).
func ParseHeader(report []byte) (h Header, body []byte, err error) {
	line, body, _ := bytes.Cut(report, []byte{'\n'})
	if len(line) > MaxHeader {
		return Header{}, nil, fmt.Errorf("%w: first line of %d bytes", ErrReport, len(line))
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return Header{}, nil, fmt.Errorf("%w: first line is not a JSON object", ErrReport)
	}
	// bug_type is a string in every report the references show; a number
	// is accepted too.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Header{}, nil, fmt.Errorf("%w: %v", ErrReport, err)
	}
	str := func(k string) string {
		v, ok := raw[k]
		if !ok {
			return ""
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
		var n json.Number
		if json.Unmarshal(v, &n) == nil {
			return n.String()
		}
		return ""
	}
	h = Header{BugType: str("bug_type"), Name: str("name"), Timestamp: str("timestamp"),
		IncidentID: str("incident_id"), OSVersion: str("os_version"), BundleID: str("bundleID")}
	return h, body, nil
}

// Kind names the report's bug type as pycrashreport groups them.
func (h Header) Kind() string {
	switch h.BugType {
	case "109", "309":
		return "crash"
	case "210":
		return "panic"
	case "327", "385":
		return "resource"
	}
	return "report"
}

// SavedReport recognises the log line the device writes when it has saved
// a report (crash.md §4): from osanalyticshelper, logged by the OSAnalytics
// framework, "Saved type …" ending with the report's path. It returns the
// report's file name when that is an .ips or .panic file.
func SavedReport(process, image, message string) (name string, ok bool) {
	if path.Base(process) != "osanalyticshelper" || path.Base(image) != "OSAnalytics" || !strings.HasPrefix(message, "Saved type ") {
		return "", false
	}
	f := strings.Fields(message)
	name = path.Base(f[len(f)-1])
	if ext := path.Ext(name); ext != ".ips" && ext != ".panic" {
		return "", false
	}
	return name, true
}
