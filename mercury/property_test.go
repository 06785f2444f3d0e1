package mercury

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// randomFacts draws facts of every shape: any handshake key missing or of
// the wrong wire type, any state, optional names, tags.
func randomFacts(r *rand.Rand) *Facts {
	var u xpc.UUID
	for i := range u {
		u[i] = byte(r.Uint32())
	}
	f := &Facts{
		DeviceUUID:          u,
		ServiceIdentifier:   UUIDIdentifier(u, []string{"", "x", "com.example"}[r.IntN(3)]),
		Tunnel:              TunnelState(r.IntN(3)),
		PairRecord:          PairRecordState(r.IntN(3)),
		PairSetupInProgress: r.IntN(2) == 0,
		DDI:                 DDIState{Known: r.IntN(2) == 0, Mounted: r.IntN(2) == 0, ServicesAdvertised: r.IntN(2) == 0},
		DeveloperMode:       DeveloperMode(r.IntN(4)),
		PowerAssertion:      r.IntN(2) == 0,
		ExtendedInfoLoaded:  r.IntN(2) == 0,
		UsageAssertions:     r.IntN(3) / 2,
		Monotonic:           r.Int64N(1 << 40),
	}
	if r.IntN(8) == 0 {
		f.ServiceIdentifier.ECID = ptr(r.Uint64())
	}
	if r.IntN(5) != 0 {
		h := xpc.NewDict()
		for _, k := range []string{"ProductType", "OSVersion", "BuildVersion", "UniqueDeviceID", "SerialNumber", "HardwarePlatform", "UniqueChipID", "HWModel"} {
			switch r.IntN(6) {
			case 0:
			case 1:
				h.Set(k, xpc.Int64(r.Int64()-r.Int64()))
			case 2:
				h.Set(k, xpc.Uint64(r.Uint64()))
			case 3:
				h.Set(k, xpc.Data{1, 2, 3})
			default:
				h.Set(k, xpc.String(fmt.Sprintf("v%d", r.IntN(1000))))
			}
		}
		f.Handshake = h
	}
	if r.IntN(2) == 0 {
		f.DeviceName = ptr(fmt.Sprintf("iPhone %d ✓", r.IntN(100)))
	}
	if r.IntN(6) == 0 {
		f.Label = ptr("Lab")
	}
	for range r.IntN(3) {
		f.Tags = append(f.Tags, fmt.Sprintf("tag%d", r.IntN(5)))
	}
	return f
}

// Every reply built from any facts validates against its action's Output,
// and its content is what the facts say.
func TestPropertyRepliesValidate(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 2026))
	replies := map[string]int{}
	for i := range 4000 {
		f := randomFacts(r)
		a := Actions[r.IntN(len(Actions))]
		req := request(a.ID, xpc.NewDict("sideChannel", xpc.NewHandle(xpc.KindEndpoint, uint64(i))))
		dev := f.DeviceUUID
		if r.IntN(10) == 0 {
			dev[0] ^= 1
		}
		req.Set(KeyDeviceIdentifier, xpc.String(strings.ToUpper(dev.String())))
		res := Answer(req, f)
		if res.Disposition == Passthrough {
			if res.Reply != nil || res.Reason == "" {
				t.Fatalf("case %d %s: passthrough with reply %v or no reason", i, a.Short, res.Reply)
			}
			continue
		}
		replies[a.Short]++
		if err := ValidateReply(req, res.Reply, a.Output); err != nil {
			t.Fatalf("case %d %s: reply does not validate: %v", i, a.Short, err)
		}
		if dev != f.DeviceUUID || f.Tunnel != TunnelUp {
			t.Fatalf("case %d %s: reply for a foreign device or a down tunnel", i, a.Short)
		}
		checkSnapshotFacts(t, i, a, res.Reply.Get(KeyOutput), f)
	}
	if replies["listusageassertions"] != 0 {
		t.Error("listusageassertions answered while CDS grants the assertions itself")
	}
	for _, s := range []string{"pair", "disableddiservicesaction"} {
		if replies[s] == 0 {
			t.Errorf("no %s reply in the sample: the property was not exercised", s)
		}
	}
}

func checkSnapshotFacts(t *testing.T, i int, a *Action, out xpc.Value, f *Facts) {
	t.Helper()
	var snap *xpc.Dict
	switch a.Short {
	case "pair":
		if f.PairRecord != PairVerified {
			t.Fatalf("case %d: pair success with pairing %v", i, f.PairRecord)
		}
		snap = out.(*xpc.Dict).Dict("updatedSnapshot")
	case "disableddiservicesaction":
		snap = out.(*xpc.Dict)
	default:
		return
	}
	info := snap.Dict("deviceInfo")
	if info.UUID("identifier") != f.DeviceUUID || snap.Int64("monotonicIdentifier") != f.Monotonic {
		t.Fatalf("case %d: identifier or counter not from facts", i)
	}
	if info.String("pairingState") != PairingState(f) || info.Int64("preparednessState") != Preparedness(f) {
		t.Fatalf("case %d: pairing/preparedness not derived from facts", i)
	}
	avail, _ := DDIAvailable(f)
	if info.Bool("areDeveloperDiskImageServicesAvailable") != avail {
		t.Fatalf("case %d: DDI availability not from facts", i)
	}
	if avail && !(f.DDI.Known && f.DDI.Mounted && f.DDI.ServicesAdvertised) {
		t.Fatalf("case %d: DDI claimed without evidence", i)
	}
	wantName := f.Label
	if wantName == nil {
		wantName = f.DeviceName
	}
	if (wantName == nil) == info.Has("name") || (wantName != nil && info.String("name") != *wantName) {
		t.Fatalf("case %d: name %q, facts %v/%v", i, info.String("name"), f.DeviceName, f.Label)
	}
	for _, h := range handshakeFields {
		s, ok := f.Handshake.Get(h.prop).(xpc.String)
		if info.Has(h.field) != ok || (ok && info.String(h.field) != string(s)) {
			t.Fatalf("case %d: %s not from the handshake", i, h.field)
		}
	}
	if ecid, ok := info.Get("ecid").(xpc.Uint64); ok {
		switch v := f.Handshake.Get("UniqueChipID").(type) {
		case xpc.Int64:
			if v < 0 || uint64(v) != uint64(ecid) {
				t.Fatalf("case %d: ecid %d from %d", i, ecid, v)
			}
		case xpc.Uint64:
			if v != ecid {
				t.Fatalf("case %d: ecid %d from %d", i, ecid, v)
			}
		default:
			t.Fatalf("case %d: ecid without a source", i)
		}
	}
}
