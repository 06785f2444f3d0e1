package mounter

import (
	"fmt"

	"github.com/iosmux/iosmux/lockdown"
)

// Entry is one mounted image as CopyDevices reports it.
type Entry struct {
	DiskImageType         string `json:"diskImageType"`
	PersonalizedImageType string `json:"personalizedImageType,omitempty"`
	MountPath             string `json:"mountPath"`
	ImageSignature        []byte `json:"imageSignature,omitempty"`
	IsMounted             bool   `json:"isMounted"`
}

// Identifiers are the device's PersonalizationIdentifiers.
type Identifiers struct {
	BoardID, ChipID uint64
	ECID            uint64 // UniqueChipID, 0 if absent
	SecurityDomain  uint64
	// All is every key as received (Ap,* keys go into the TSS request).
	All map[string]any
}

// checkReply turns an Error reply into a *DeviceError.
func checkReply(cmd string, rep lockdown.Message) error {
	code, ok := rep["Error"]
	if !ok {
		return nil
	}
	e := &DeviceError{Command: cmd, Code: fmt.Sprint(code)}
	e.Detail, _ = rep.String("DetailedError")
	if e.Detail == "" {
		e.Detail, _ = rep.String("ErrorDescription")
	}
	return e
}

// parseLookup reads LookupImage's signatures; an absent list, or
// ImagePresent false, is none.
func parseLookup(rep lockdown.Message) [][]byte {
	if present, ok := rep.Bool("ImagePresent"); ok && !present {
		return nil
	}
	list, _ := rep["ImageSignature"].([]any)
	var out [][]byte
	for _, v := range list {
		if b, ok := v.([]byte); ok {
			out = append(out, b)
		}
	}
	return out
}

// parseEntries reads CopyDevices; ok is false when EntryList is missing
// (the command is not supported).
func parseEntries(rep lockdown.Message) (entries []Entry, ok bool) {
	list, ok := rep["EntryList"].([]any)
	if !ok {
		return nil, false
	}
	for _, v := range list {
		d, ok := v.(map[string]any)
		if !ok {
			continue
		}
		m := lockdown.Message(d)
		var e Entry
		e.DiskImageType, _ = m.String("DiskImageType")
		e.PersonalizedImageType, _ = m.String("PersonalizedImageType")
		e.MountPath, _ = m.String("MountPath")
		e.ImageSignature, _ = m.Data("ImageSignature")
		mounted, present := m.Bool("IsMounted")
		e.IsMounted = mounted || !present
		entries = append(entries, e)
	}
	return entries, true
}

// parseIdentifiers reads QueryPersonalizationIdentifiers.
func parseIdentifiers(rep lockdown.Message) (Identifiers, error) {
	d, ok := rep.Dict("PersonalizationIdentifiers")
	if !ok {
		return Identifiers{}, fmt.Errorf("%w: QueryPersonalizationIdentifiers reply without PersonalizationIdentifiers", lockdown.ErrMalformed)
	}
	id := Identifiers{All: d}
	var okB, okC bool
	id.BoardID, okB = d.Uint("BoardId")
	id.ChipID, okC = d.Uint("ChipID")
	if !okB || !okC {
		return Identifiers{}, fmt.Errorf("%w: PersonalizationIdentifiers without BoardId and ChipID integers", lockdown.ErrMalformed)
	}
	id.ECID, _ = d.Uint("UniqueChipID")
	id.SecurityDomain, _ = d.Uint("SecurityDomain")
	return id, nil
}
