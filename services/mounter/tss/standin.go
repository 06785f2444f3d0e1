package tss

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/iosmux/iosmux/internal/safeplist"
	"howett.net/plist"
)

// KnownDevice is what the stand-in knows of a simulated device.
type KnownDevice struct {
	ECID            uint64
	BoardID, ChipID uint64
	// Nonce is the device's current personalization nonce.
	Nonce []byte
}

// RefusedMessage is the message of the stand-in's refusals (status 94, the
// text Apple sends for a build the device may not have).
const (
	RefusedStatus  = 94
	RefusedMessage = "This device isn't eligible for the requested build."
)

// simTicketMagic starts every stand-in ticket. Tickets are not IM4M
// manifests: hosts never parse tickets, and the simulated mounter checks
// this one.
var simTicketMagic = []byte("IOSMUX-SIM-IM4M\x00")

// SimTicket is the stand-in's ticket for a device and an image: the magic
// and SHA-384(u64be ECID ‖ nonce ‖ image digest ‖ trust cache digest), 64
// bytes. The simulated mounter recomputes it at MountImage.
func SimTicket(ecid uint64, nonce, imageDigest, trustCacheDigest []byte) []byte {
	h := sha512.New384()
	binary.Write(h, binary.BigEndian, ecid)
	h.Write(nonce)
	h.Write(imageDigest)
	h.Write(trustCacheDigest)
	return h.Sum(append([]byte(nil), simTicketMagic...))
}

// StandIn signs DDI personalization requests for simulated devices in
// place of Apple's server (an http.Handler for any path and query). It
// refuses, as Apple does with status 94, a request whose device values or
// nonce are not a known device's current ones, or whose PersonalizedDMG
// or LoadableTrustCache is missing, untrusted, without a 48-byte Digest,
// or without EPRO and ESEC true. Safe for concurrent use.
type StandIn struct {
	// Lookup finds a device by ECID.
	Lookup func(ecid uint64) (KnownDevice, bool)

	requests atomic.Int64
	mu       sync.Mutex
	last     error
}

// Requests is the number of requests served so far.
func (s *StandIn) Requests() int64 { return s.requests.Load() }

// LastRefusal is why the last refused request was refused, nil if none.
func (s *StandIn) LastRefusal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *StandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	s.requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxResponse+1))
	w.Header().Set("Content-Type", "text/plain")
	if err != nil || len(body) > MaxResponse {
		s.refuse(w, fmt.Errorf("unreadable or oversized request body"))
		return
	}
	ticket, err := s.sign(body)
	if err != nil {
		s.refuse(w, err)
		return
	}
	out, _ := plist.MarshalIndent(map[string]any{"ApImg4Ticket": ticket}, plist.XMLFormat, "\t")
	w.Write(append([]byte("STATUS=0&MESSAGE=SUCCESS&REQUEST_STRING="), out...))
}

func (s *StandIn) refuse(w http.ResponseWriter, why error) {
	s.mu.Lock()
	s.last = why
	s.mu.Unlock()
	fmt.Fprintf(w, "STATUS=%d&MESSAGE=%s", RefusedStatus, RefusedMessage)
}

func (s *StandIn) sign(body []byte) ([]byte, error) {
	var req map[string]any
	if err := safeplist.Unmarshal(body, &req); err != nil || req == nil {
		return nil, fmt.Errorf("request is not a plist dictionary")
	}
	ecid, okE := req["ApECID"].(uint64)
	board, okB := req["ApBoardID"].(uint64)
	chip, okC := req["ApChipID"].(uint64)
	nonce, okN := req["ApNonce"].([]byte)
	if !okE || !okB || !okC || !okN {
		return nil, fmt.Errorf("ApECID, ApBoardID, ApChipID or ApNonce missing")
	}
	if s.Lookup == nil {
		return nil, fmt.Errorf("no devices")
	}
	d, ok := s.Lookup(ecid)
	if !ok {
		return nil, fmt.Errorf("unknown ECID %#x", ecid)
	}
	if board != d.BoardID || chip != d.ChipID {
		return nil, fmt.Errorf("board/chip %#x/%#x, device has %#x/%#x", board, chip, d.BoardID, d.ChipID)
	}
	if !bytes.Equal(nonce, d.Nonce) {
		return nil, fmt.Errorf("ApNonce is not the device's current nonce")
	}
	var digests [2][]byte
	for i, name := range []string{"PersonalizedDMG", "LoadableTrustCache"} {
		e, ok := req[name].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s missing", name)
		}
		dg, _ := e["Digest"].([]byte)
		trusted, _ := e["Trusted"].(bool)
		epro, _ := e["EPRO"].(bool)
		esec, _ := e["ESEC"].(bool)
		switch {
		case !trusted:
			return nil, fmt.Errorf("%s not Trusted", name)
		case len(dg) != sha512.Size384:
			return nil, fmt.Errorf("%s Digest of %d bytes", name, len(dg))
		case !epro || !esec:
			return nil, fmt.Errorf("%s without EPRO and ESEC (RestoreRequestRules not applied)", name)
		}
		digests[i] = dg
	}
	return SimTicket(ecid, nonce, digests[0], digests[1]), nil
}
