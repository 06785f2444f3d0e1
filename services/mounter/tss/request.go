package tss

import (
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"strings"

	"howett.net/plist"
)

// VersionInfo is the @VersionInfo hosts send (pmd3 and go-ios).
const VersionInfo = "libauthinstall-1104.0.9"

// Params are the inputs of a DDI personalization request.
type Params struct {
	// ECID, BoardID and ChipID identify the device (personalization
	// identifiers UniqueChipID, BoardId, ChipID).
	ECID            uint64
	BoardID, ChipID uint64
	// SecurityDomain; 0 means 1 (pmd3's constant, which every device
	// of this kind reports).
	SecurityDomain uint64
	// Nonce is the device's personalization nonce (QueryNonce).
	Nonce []byte
	// Identifiers are the device's PersonalizationIdentifiers; every key
	// beginning "Ap," is copied into the request unchanged.
	Identifiers map[string]any
	// Manifest is the selected build identity's Manifest (component →
	// entry).
	Manifest map[string]any
	// UUID is @UUID; "" draws a random one.
	UUID string
}

// ruleParams are the device parameters RestoreRequestRules are evaluated
// against: a production device in secure mode that requires Image4.
var ruleParams = map[string]any{
	"ApProductionMode": true,
	"ApSecurityMode":   true,
	"ApSupportsImg4":   true,
	"ApSecurityDomain": uint64(1),
}

// conditionParam maps a rule's condition key to the parameter it tests;
// any other key makes the rule not apply.
var conditionParam = map[string]string{
	"ApRawProductionMode":      "ApProductionMode",
	"ApCurrentProductionMode":  "ApProductionMode",
	"ApRawSecurityMode":        "ApSecurityMode",
	"ApRequiresImage4":         "ApSupportsImg4",
	"ApDemotionPolicyOverride": "DemotionPolicy",
	"ApInRomDFU":               "ApInRomDFU",
}

// NewRequest builds the TSS request body for p as a dictionary
// (services.md §3.3): the fixed @-keys, the device's values,
// its Ap,* identifiers, and one entry per trusted manifest component
// (the entry without Info, the LoadableTrustCache's RestoreRequestRules
// applied to it). Without those rules a production device's request lacks
// EPRO/ESEC and Apple refuses it (status 94).
func NewRequest(p Params) (map[string]any, error) {
	if len(p.Nonce) == 0 {
		return nil, errors.New("tss: no personalization nonce")
	}
	if p.Manifest == nil {
		return nil, errors.New("tss: no build identity manifest")
	}
	if p.SecurityDomain == 0 {
		p.SecurityDomain = 1
	}
	if p.UUID == "" {
		p.UUID = randomUUID()
	}
	req := map[string]any{
		"@ApImg4Ticket":     true,
		"@BBTicket":         true,
		"@HostPlatformInfo": "mac",
		"@VersionInfo":      VersionInfo,
		"@UUID":             p.UUID,
		"ApBoardID":         p.BoardID,
		"ApChipID":          p.ChipID,
		"ApECID":            p.ECID,
		"ApNonce":           p.Nonce,
		"ApProductionMode":  true,
		"ApSecurityDomain":  p.SecurityDomain,
		"ApSecurityMode":    true,
		"SepNonce":          make([]byte, 20),
		"UID_MODE":          false,
	}
	for k, v := range p.Identifiers {
		if strings.HasPrefix(k, "Ap,") {
			req[k] = v
		}
	}
	var rules []any
	if tc, ok := p.Manifest["LoadableTrustCache"].(map[string]any); ok {
		if info, ok := tc["Info"].(map[string]any); ok {
			rules, _ = info["RestoreRequestRules"].([]any)
		}
	}
	for name, v := range p.Manifest {
		entry, ok := v.(map[string]any)
		if !ok {
			continue
		}
		if _, ok := entry["Info"].(map[string]any); !ok {
			continue
		}
		if trusted, _ := entry["Trusted"].(bool); !trusted {
			continue
		}
		out := maps.Clone(entry)
		delete(out, "Info")
		applyRules(out, rules, ruleParams)
		if _, ok := out["Digest"]; !ok {
			out["Digest"] = []byte{}
		}
		req[name] = out
	}
	return req, nil
}

// applyRules sets the Actions of every rule whose Conditions all match
// params on entry; an action value of 255 means "leave unchanged".
func applyRules(entry map[string]any, rules []any, params map[string]any) {
	for _, r := range rules {
		rule, ok := r.(map[string]any)
		if !ok {
			continue
		}
		conds, _ := rule["Conditions"].(map[string]any)
		actions, _ := rule["Actions"].(map[string]any)
		if conds == nil || actions == nil || !matches(conds, params) {
			continue
		}
		for k, v := range actions {
			if isInt(v, 255) {
				continue
			}
			entry[k] = v
		}
	}
}

func matches(conds, params map[string]any) bool {
	for k, want := range conds {
		p, ok := conditionParam[k]
		if !ok {
			return false
		}
		got, ok := params[p]
		if !ok || !equal(got, want) {
			return false
		}
	}
	return true
}

// equal compares plist scalars, integers whatever their Go type.
func equal(a, b any) bool {
	if x, ok := asInt(a); ok {
		y, ok := asInt(b)
		return ok && x == y
	}
	return a == b
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case uint64:
		if x>>63 == 0 {
			return int64(x), true
		}
	case int64:
		return x, true
	case int:
		return int64(x), true
	}
	return 0, false
}

func isInt(v any, n int64) bool {
	x, ok := asInt(v)
	return ok && x == n
}

// Encode is the request as the XML plist hosts post.
func Encode(req map[string]any) ([]byte, error) {
	b, err := plist.MarshalIndent(req, plist.XMLFormat, "\t")
	if err != nil {
		return nil, fmt.Errorf("tss: encoding the request: %w", err)
	}
	return b, nil
}

// randomUUID is an upper-case v4 UUID (pmd3 sends upper case).
func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}
