package ddi

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/iosmux/iosmux/internal/safeplist"
)

// Bounds on what ParseManifest accepts. Xcode's BuildManifest.plist is a
// few hundred kilobytes with about 141 identities.
const (
	MaxManifestSize = 16 << 20
	MaxIdentities   = 4096
)

// ErrMalformed marks a BuildManifest.plist that is not one.
var ErrMalformed = errors.New("ddi: malformed BuildManifest.plist")

// Manifest is a personalized DDI's BuildManifest.plist: the build and one
// identity per board the image is personalised for.
type Manifest struct {
	ProductBuildVersion string
	ProductVersion      string
	Identities          []Identity
}

// Identity is one entry of BuildIdentities.
type Identity struct {
	BoardID, ChipID uint64
	// Variant is Info.Variant ("Developer Disk Image"), DeviceClass
	// Info.DeviceClass ("d74ap"), for messages.
	Variant, DeviceClass string
	// Manifest maps each component (PersonalizedDMG, LoadableTrustCache,
	// …) to its entry: Digest, Trusted, Info (Path, RestoreRequestRules),
	// as decoded. The TSS request is built from it.
	Manifest map[string]any
}

// Component names of a personalized DDI.
const (
	ComponentImage      = "PersonalizedDMG"
	ComponentTrustCache = "LoadableTrustCache"
)

// ParseManifest decodes a BuildManifest.plist (XML or binary). Identities
// whose ApBoardID or ApChipID do not parse are kept out, not fatal: the
// file is shared by every board and one bad row must not hide the rest.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxManifestSize)
	}
	var raw map[string]any
	if err := safeplist.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: not a dictionary", ErrMalformed)
	}
	m := &Manifest{}
	m.ProductBuildVersion, _ = raw["ProductBuildVersion"].(string)
	m.ProductVersion, _ = raw["ProductVersion"].(string)
	ids, ok := raw["BuildIdentities"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: no BuildIdentities array", ErrMalformed)
	}
	if len(ids) > MaxIdentities {
		return nil, fmt.Errorf("%w: %d build identities, more than %d", ErrMalformed, len(ids), MaxIdentities)
	}
	for _, v := range ids {
		d, ok := v.(map[string]any)
		if !ok {
			continue
		}
		board, okB := parseID(d["ApBoardID"])
		chip, okC := parseID(d["ApChipID"])
		comps, okM := d["Manifest"].(map[string]any)
		if !okB || !okC || !okM {
			continue
		}
		id := Identity{BoardID: board, ChipID: chip, Manifest: comps}
		if info, ok := d["Info"].(map[string]any); ok {
			id.Variant, _ = info["Variant"].(string)
			id.DeviceClass, _ = info["DeviceClass"].(string)
		}
		m.Identities = append(m.Identities, id)
	}
	if len(m.Identities) == 0 {
		return nil, fmt.Errorf("%w: no usable build identity (ApBoardID, ApChipID and Manifest)", ErrMalformed)
	}
	return m, nil
}

// parseID reads ApBoardID/ApChipID: a hex string with or without "0x"
// (Apple writes "0x0E"; references differ on the prefix), or an integer.
func parseID(v any) (uint64, bool) {
	switch x := v.(type) {
	case string:
		s := strings.TrimSpace(x)
		s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
		if s == "" {
			return 0, false
		}
		n, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			return 0, false
		}
		return n, true
	case uint64:
		if x <= 0xFFFFFFFF {
			return x, true
		}
	case int64:
		if x >= 0 && x <= 0xFFFFFFFF {
			return uint64(x), true
		}
	}
	return 0, false
}

// NoIdentityError says that a DDI has no build identity for a device: the
// DDI is older than the device (or for another platform).
type NoIdentityError struct {
	BoardID, ChipID uint64
	Have            [][2]uint64 // the DDI's (board, chip) pairs
}

// ErrNoIdentity matches every *NoIdentityError.
var ErrNoIdentity = errors.New("ddi: no build identity for this device")

func (e *NoIdentityError) Error() string {
	var have []string
	for i, h := range e.Have {
		if i == 8 {
			have = append(have, fmt.Sprintf("… %d more", len(e.Have)-i))
			break
		}
		have = append(have, fmt.Sprintf("BoardId 0x%X/ChipID 0x%X", h[0], h[1]))
	}
	return fmt.Sprintf("ddi: the developer disk image has no build identity for this device (BoardId 0x%X, ChipID 0x%X); it has %s. Use a DDI from an Xcode that supports the device, or --download a newer one",
		e.BoardID, e.ChipID, strings.Join(have, ", "))
}

func (e *NoIdentityError) Is(target error) bool { return target == ErrNoIdentity }

// Select returns the first identity for the device's BoardId and ChipID
// (the personalization identifiers), as every reference does.
func (m *Manifest) Select(boardID, chipID uint64) (*Identity, error) {
	e := &NoIdentityError{BoardID: boardID, ChipID: chipID}
	for i := range m.Identities {
		id := &m.Identities[i]
		if id.BoardID == boardID && id.ChipID == chipID {
			return id, nil
		}
		e.Have = append(e.Have, [2]uint64{id.BoardID, id.ChipID})
	}
	return nil, e
}

// component returns a component's entry; the image is PersonalizedDMG or,
// in some manifests, PersonalizedDmg (go-ios accepts both).
func (id *Identity) component(name string) (map[string]any, bool) {
	if d, ok := id.Manifest[name].(map[string]any); ok {
		return d, true
	}
	if name == ComponentImage {
		d, ok := id.Manifest["PersonalizedDmg"].(map[string]any)
		return d, ok
	}
	return nil, false
}

// Path returns a component's Info.Path, a path relative to the Restore
// folder. Absolute paths and paths that climb out of it are refused.
func (id *Identity) Path(component string) (string, error) {
	d, ok := id.component(component)
	if !ok {
		return "", fmt.Errorf("ddi: build identity 0x%X/0x%X has no %s component", id.BoardID, id.ChipID, component)
	}
	info, _ := d["Info"].(map[string]any)
	p, _ := info["Path"].(string)
	if p == "" {
		return "", fmt.Errorf("ddi: %s of build identity 0x%X/0x%X has no Info.Path", component, id.BoardID, id.ChipID)
	}
	clean := path.Clean(p)
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("ddi: %s path %q leaves the Restore folder", component, p)
	}
	return clean, nil
}

// Digest returns a component's Digest (SHA-384 of the file).
func (id *Identity) Digest(component string) ([]byte, bool) {
	d, ok := id.component(component)
	if !ok {
		return nil, false
	}
	b, ok := d["Digest"].([]byte)
	return b, ok
}
