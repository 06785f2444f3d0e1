package sim

import (
	"fmt"
	"strconv"
	"strings"
)

// Profile is the iOS release a simulated device runs. It decides the
// version strings the device reports and which tunnel paths it offers
// (tunnel.md §1): CoreDeviceProxy from 17.4, no QUIC listener from 18.2,
// and from 27.2 the RSD peer rule of rsd.md §3.
type Profile struct {
	// Name is what --profile accepted, e.g. "17.4".
	Name string
	// OSVersion and BuildVersion are reported by lockdown
	// (ProductVersion) and RSD (OSVersion).
	OSVersion    string
	BuildVersion string
	// MessagingProtocolVersion is the RSD Handshake's (rsd.md §2.2:
	// 3 on iOS 17.0, 5 on 18.0, 7 on iOS 26).
	MessagingProtocolVersion uint64
	// CoreDeviceProxy: lockdown offers the P1 service (iOS ≥ 17.4);
	// below, StartService answers InvalidService.
	CoreDeviceProxy bool
	// QUIC: the device would accept createListener with transport quic
	// (iOS < 18.2). See Device's doc: the QUIC listener itself is not
	// simulated yet, so such requests get errorExtended either way.
	QUIC bool
	// PeerReattach: iOS ≥ 27.2 keeps one RSD peer per tunnel and closes
	// every advertised service port when a new peer presents a different
	// Handshake UUID (rsd.md §3).
	PeerReattach bool

	major, minor, patch int
}

// Profiles are the named profiles of issue 7, one per behaviour class.
var Profiles = []string{"17.0", "17.4", "18.2", "27.2"}

// DefaultProfile is used when none is given.
const DefaultProfile = "18.2"

// knownBuilds maps released versions to their build numbers (public
// release notes). Versions not listed get a synthesised build (SIM).
var knownBuilds = map[string]string{
	"17.0":   "21A329",
	"17.0.3": "21A360",
	"17.1":   "21B80",
	"17.2":   "21C62",
	"17.3":   "21D50",
	"17.3.1": "21D61",
	"17.4":   "21E219",
	"17.4.1": "21E237",
	"17.5":   "21F79",
	"17.6":   "21G80",
	"18.0":   "22A3354",
	"18.1":   "22B83",
	"18.2":   "22C152",
	"18.3":   "22D63",
	"18.4":   "22E240",
	"18.5":   "22F76",
	"26.0":   "23A341",
}

// ParseProfile reads a profile name: an iOS version "17.0" or later with
// two or three components, optionally prefixed "ios" ("ios17.4").
func ParseProfile(s string) (Profile, error) {
	v := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "ios")
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Profile{}, fmt.Errorf("sim: profile %q: want an iOS version such as 17.4 (one of %s)", s, strings.Join(Profiles, ", "))
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 || x > 99 {
			return Profile{}, fmt.Errorf("sim: profile %q: bad version component %q", s, p)
		}
		n[i] = x
	}
	if n[0] < 17 {
		return Profile{}, fmt.Errorf("sim: profile %q: tunnels need iOS 17.0 or later", s)
	}
	p := Profile{Name: v, OSVersion: v, major: n[0], minor: n[1], patch: n[2]}
	p.BuildVersion = knownBuilds[v]
	if p.BuildVersion == "" {
		p.BuildVersion = synthBuild(n)
	}
	switch {
	case n[0] == 17:
		p.MessagingProtocolVersion = 3
	case n[0] < 26:
		p.MessagingProtocolVersion = 5
	default:
		p.MessagingProtocolVersion = 7
	}
	p.CoreDeviceProxy = p.atLeast(17, 4)
	p.QUIC = !p.atLeast(18, 2)
	p.PeerReattach = p.atLeast(27, 2)
	return p, nil
}

// MustProfile is ParseProfile for constant names; it panics on a bad one.
func MustProfile(s string) Profile {
	p, err := ParseProfile(s)
	if err != nil {
		panic(err)
	}
	return p
}

func (p Profile) atLeast(major, minor int) bool {
	return p.major > major || p.major == major && p.minor >= minor
}

// Major is the major iOS version.
func (p Profile) Major() int { return p.major }

// synthBuild makes a build number in Apple's shape for a version without
// a known one: the train number (21 for iOS 17, 22 for 18, 23 for 26, …),
// a letter per minor release and a number per patch. SIM: not a real build.
func synthBuild(n [3]int) string {
	train := n[0] + 4
	if n[0] >= 26 {
		train = n[0] - 3
	}
	return fmt.Sprintf("%d%c%d", train, 'A'+rune(min(n[1], 25)), 100+n[2])
}
