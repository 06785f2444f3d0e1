package tss

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/internal/safeplist"
	"github.com/iosmux/iosmux/services/mounter/ddi"
)

// vector01 is tss01's inputs.
type vector01 struct {
	Inputs struct {
		Identifiers map[string]any `json:"personalization_identifiers"`
		ECID        uint64         `json:"ecid"`
		NonceHex    string         `json:"ap_nonce_hex"`
	} `json:"inputs"`
}

func params(t testing.TB) Params {
	t.Helper()
	b, err := os.ReadFile("testdata/tss01_request.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v vector01
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	ids := map[string]any{}
	for k, x := range v.Inputs.Identifiers {
		switch x := x.(type) {
		case json.Number:
			n, _ := x.Int64()
			ids[k] = uint64(n)
		default:
			ids[k] = x
		}
	}
	bundle, err := ddi.Open("../ddi/testdata/ddi_restore")
	if err != nil {
		t.Fatal(err)
	}
	id, err := bundle.Manifest.Select(14, 33056)
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := hex.DecodeString(v.Inputs.NonceHex)
	return Params{ECID: v.Inputs.ECID, BoardID: 14, ChipID: 33056, Nonce: nonce, Identifiers: ids,
		Manifest: id.Manifest, UUID: "C0FFEE00-1234-4567-89AB-CDEF01234567"}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := safeplist.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRequestVector: the request equals pymobiledevice3's for the same
// inputs (tss01), key for key and value for value: the untrusted component
// left out, EPRO and ESEC set by the trust cache's rules.
func TestRequestVector(t *testing.T) {
	req, err := NewRequest(params(t))
	if err != nil {
		t.Fatal(err)
	}
	body, err := Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/tss01_request_body.plist")
	if err != nil {
		t.Fatal(err)
	}
	got, exp := decode(t, body), decode(t, want)
	if !reflect.DeepEqual(got, exp) {
		for k := range maps.Keys(exp) {
			if !reflect.DeepEqual(got[k], exp[k]) {
				t.Errorf("%s = %#v, want %#v", k, got[k], exp[k])
			}
		}
		for k := range maps.Keys(got) {
			if _, ok := exp[k]; !ok {
				t.Errorf("extra key %s", k)
			}
		}
	}
}

func TestRules(t *testing.T) {
	rule := func(cond map[string]any, act map[string]any) any {
		return map[string]any{"Conditions": cond, "Actions": act}
	}
	for _, tt := range []struct {
		name  string
		rules []any
		want  map[string]any
	}{
		{"applies", []any{rule(map[string]any{"ApRawProductionMode": true}, map[string]any{"EPRO": true})}, map[string]any{"EPRO": true}},
		{"all conditions", []any{rule(map[string]any{"ApRawProductionMode": true, "ApRequiresImage4": false}, map[string]any{"EPRO": true})}, map[string]any{}},
		{"unknown condition", []any{rule(map[string]any{"ApSomething": true}, map[string]any{"EPRO": true})}, map[string]any{}},
		{"absent parameter", []any{rule(map[string]any{"ApInRomDFU": true}, map[string]any{"EPRO": true})}, map[string]any{}},
		{"255 leaves unchanged", []any{rule(map[string]any{"ApRawSecurityMode": true}, map[string]any{"ESEC": uint64(255), "EPRO": true})}, map[string]any{"EPRO": true}},
		{"later rule wins", []any{
			rule(map[string]any{"ApRawSecurityMode": true}, map[string]any{"ESEC": false}),
			rule(map[string]any{"ApCurrentProductionMode": true}, map[string]any{"ESEC": true}),
		}, map[string]any{"ESEC": true}},
		{"junk ignored", []any{"x", map[string]any{"Conditions": "y"}}, map[string]any{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]any{}
			applyRules(e, tt.rules, ruleParams)
			if !reflect.DeepEqual(e, tt.want) {
				t.Errorf("got %v, want %v", e, tt.want)
			}
		})
	}
}

func TestResponseVectors(t *testing.T) {
	b, _ := os.ReadFile("testdata/tss02_response_success.txt")
	r, err := ParseResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	ticket, err := r.Ticket()
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		TicketHex string `json:"ticket_hex"`
	}
	jb, _ := os.ReadFile("testdata/tss02_response_success.json")
	json.Unmarshal(jb, &meta)
	if hex.EncodeToString(ticket) != meta.TicketHex {
		t.Errorf("ticket %x, want %s", ticket, meta.TicketHex)
	}
	// The stand-in's formula gives the vector's ticket for tss01's inputs.
	p := params(t)
	bundle, _ := ddi.Open("../ddi/testdata/ddi_restore")
	id, _ := bundle.Manifest.Select(14, 33056)
	dmg, _ := id.Digest(ddi.ComponentImage)
	tc, _ := id.Digest(ddi.ComponentTrustCache)
	if got := SimTicket(p.ECID, p.Nonce, dmg, tc); !bytes.Equal(got, ticket) {
		t.Errorf("SimTicket %x, want %x", got, ticket)
	}

	b, _ = os.ReadFile("testdata/tss03_response_not_eligible.txt")
	r, err = ParseResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Ticket()
	var re *RefusedError
	if !errors.As(err, &re) || re.Status != 94 || re.Message != RefusedMessage || !errors.Is(err, ErrRefused) {
		t.Errorf("refusal %v", err)
	}
}

func TestParseResponseBad(t *testing.T) {
	for _, in := range []string{"", "hello", "STATUS=x&MESSAGE=y", "MESSAGE=SUCCESS", "STATUS=0&MESSAGE=SUCCESS&REQUEST_STRING=<nope"} {
		if _, err := ParseResponse([]byte(in)); err == nil {
			t.Errorf("ParseResponse(%q) accepted", in)
		}
	}
	for _, in := range []string{"STATUS=0&MESSAGE=SUCCESS", "STATUS=0&MESSAGE=OK&REQUEST_STRING=<plist><dict><key>ApImg4Ticket</key><data>AA==</data></dict></plist>"} {
		r, err := ParseResponse([]byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if _, err := r.Ticket(); err == nil {
			t.Errorf("Ticket of %q accepted", in)
		}
	}
}

func standIn(t *testing.T, p Params) (*StandIn, *Client) {
	s := &StandIn{Lookup: func(ecid uint64) (KnownDevice, bool) {
		return KnownDevice{ECID: p.ECID, BoardID: p.BoardID, ChipID: p.ChipID, Nonce: p.Nonce}, ecid == p.ECID
	}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, &Client{URL: srv.URL + "/TSS/controller?action=2"}
}

// TestStandIn: our client against the stand-in signs; a request without
// the rules applied (no EPRO/ESEC, the classic mistake), a stale nonce or
// another board are refused with Apple's status 94 and message.
func TestStandIn(t *testing.T) {
	p := params(t)
	s, c := standIn(t, p)
	req, _ := NewRequest(p)
	ticket, err := c.Ticket(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	dmg, _ := req["PersonalizedDMG"].(map[string]any)["Digest"].([]byte)
	tc, _ := req["LoadableTrustCache"].(map[string]any)["Digest"].([]byte)
	if !bytes.Equal(ticket, SimTicket(p.ECID, p.Nonce, dmg, tc)) {
		t.Error("ticket is not the stand-in's")
	}

	noRules := maps.Clone(p.Manifest)
	ltc := maps.Clone(noRules["LoadableTrustCache"].(map[string]any))
	info := maps.Clone(ltc["Info"].(map[string]any))
	delete(info, "RestoreRequestRules")
	ltc["Info"] = info
	noRules["LoadableTrustCache"] = ltc
	stale := bytes.Clone(p.Nonce)
	stale[0] ^= 1
	for _, tt := range []struct {
		name   string
		mutate func(*Params)
		why    string
	}{
		{"no rules", func(p *Params) { p.Manifest = noRules }, "EPRO"},
		{"stale nonce", func(p *Params) { p.Nonce = stale }, "nonce"},
		{"other board", func(p *Params) { p.BoardID = 12 }, "board"},
		{"unknown device", func(p *Params) { p.ECID++ }, "ECID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := p
			tt.mutate(&q)
			req, _ := NewRequest(q)
			_, err := c.Ticket(context.Background(), req)
			var re *RefusedError
			if !errors.As(err, &re) || re.Status != 94 || !strings.Contains(err.Error(), RefusedMessage) {
				t.Fatalf("got %v, want a status 94 refusal", err)
			}
			if why := s.LastRefusal(); why == nil || !strings.Contains(why.Error(), tt.why) {
				t.Errorf("refused because %v, want %q", why, tt.why)
			}
		})
	}
}

func FuzzParseResponse(f *testing.F) {
	for _, n := range []string{"tss02_response_success.txt", "tss03_response_not_eligible.txt"} {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("STATUS=0&MESSAGE=SUCCESS&REQUEST_STRING=bplist00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseResponse(in)
		if err != nil {
			return
		}
		if t, err := r.Ticket(); err == nil && len(t) == 0 {
			panic("empty ticket accepted")
		}
	})
}
