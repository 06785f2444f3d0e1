package sim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/iosmux/iosmux/tlspsk"
)

// The simulated device's TLS-PSK preferences (Realism.TLSSuites). Which
// order a real device uses is UNCONFIRMED (tlspsk.md §3.1); the default is
// the AEAD suites first (tlspsk.md §3.3).
var (
	// TLSSuitesAEAD is tlspsk.DefaultServerSuites: 0x00A9, 0x00A8, 0xCCAB,
	// 0x00AF, 0x008C.
	TLSSuitesAEAD = slices.Clone(tlspsk.DefaultServerSuites)
	// TLSSuitesCBC puts TLS_PSK_WITH_AES_256_CBC_SHA384 first, as a device
	// that prefers it would (the simulator's order before the AEAD default),
	// then the rest in TLSSuitesAEAD's order.
	TLSSuitesCBC = append([]uint16{tlspsk.TLS_PSK_WITH_AES_256_CBC_SHA384},
		slices.DeleteFunc(slices.Clone(tlspsk.DefaultServerSuites), func(id uint16) bool { return id == tlspsk.TLS_PSK_WITH_AES_256_CBC_SHA384 })...)
)

// ParseTLSSuites reads a suite preference: "aead" (TLSSuitesAEAD), "cbc"
// (TLSSuitesCBC), or a comma-separated list of suites tlspsk implements,
// each an IANA name (TLS_PSK_WITH_AES_256_GCM_SHA384) or a hex id (0x00A9).
func ParseTLSSuites(s string) ([]uint16, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "aead", "":
		return slices.Clone(TLSSuitesAEAD), nil
	case "cbc":
		return slices.Clone(TLSSuitesCBC), nil
	}
	var ids []uint16
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		id, ok := suiteID(f)
		if !ok {
			return nil, fmt.Errorf("TLS suite %q: want aead, cbc, or a list of %s", f, suiteNames())
		}
		if slices.Contains(ids, id) {
			return nil, fmt.Errorf("TLS suite %s listed twice", tlspsk.CipherSuiteName(id))
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func suiteID(f string) (uint16, bool) {
	for _, id := range tlspsk.CipherSuites() {
		if strings.EqualFold(f, tlspsk.CipherSuiteName(id)) {
			return id, true
		}
	}
	if h, ok := strings.CutPrefix(strings.ToLower(f), "0x"); ok {
		if v, err := strconv.ParseUint(h, 16, 16); err == nil && slices.Contains(tlspsk.CipherSuites(), uint16(v)) {
			return uint16(v), true
		}
	}
	return 0, false
}

func suiteNames() string {
	var names []string
	for _, id := range tlspsk.CipherSuites() {
		names = append(names, fmt.Sprintf("%s (0x%04X)", tlspsk.CipherSuiteName(id), id))
	}
	return strings.Join(names, ", ")
}
