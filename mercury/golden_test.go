package mercury

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// The golden cases G01–G35, G39 and G40 of
// docs/protocols/coredevice-schema.md §7. G36–G38 are in
// package dylib.

func mustReply(t *testing.T, req *xpc.Dict, f *Facts) *xpc.Dict {
	t.Helper()
	r := Answer(req, f)
	if r.Disposition != Reply {
		t.Fatalf("Answer: %v (%s), want reply", r.Disposition, r.Reason)
	}
	return r.Reply
}

func wantPassthrough(t *testing.T, req *xpc.Dict, f *Facts) Result {
	t.Helper()
	r := Answer(req, f)
	if r.Disposition != Passthrough || r.Reply != nil {
		t.Fatalf("Answer: %v, want passthrough", r.Disposition)
	}
	if r.Reason == "" {
		t.Error("passthrough without a reason")
	}
	return r
}

func snapshotInfo(t *testing.T, reply *xpc.Dict) *xpc.Dict {
	return dictAt(t, reply, KeyOutput, "updatedSnapshot", "deviceInfo")
}

func TestG01Iter17PairReply(t *testing.T) {
	got := mustReply(t, reqPair(), factsAll())
	if want := iter17Reply(); !bytes.Equal(encode(t, got), encode(t, want)) {
		t.Fatalf("reply differs from the iteration-17 reply:\ngot  %v\nwant %v", got.Keys(), want.Keys())
	}
	if err := Validate(DeviceConnectionChangeResultType, got.Get(KeyOutput)); err != nil {
		t.Fatal(err)
	}
}

var handshakeKeys = []string{"productType", "osVersion", "osBuild", "udid", "serialNumber", "hardwareModel", "ecid"}

func TestG02NoHandshake(t *testing.T) {
	f := factsAll()
	f.Handshake = nil
	info := snapshotInfo(t, mustReply(t, reqPair(), f))
	for _, k := range handshakeKeys {
		if info.Has(k) {
			t.Errorf("%s present without a handshake", k)
		}
	}
	for _, fl := range DeviceInfoType.Fields {
		if !fl.Optional && !info.Has(fl.Key) {
			t.Errorf("required %s missing", fl.Key)
		}
	}
	if info.String("name") != "iPhone (iosmux)" || info.String("reality") != "physical" {
		t.Errorf("name/reality = %q/%q", info.String("name"), info.String("reality"))
	}
}

func TestG03PartialHandshake(t *testing.T) {
	f := factsAll()
	f.Handshake.Delete("SerialNumber")
	f.Handshake.Set("OSVersion", xpc.Int64(26)) // wrong type: omitted too
	info := snapshotInfo(t, mustReply(t, reqPair(), f))
	for _, k := range handshakeKeys {
		want := k != "serialNumber" && k != "osVersion"
		if info.Has(k) != want {
			t.Errorf("%s present = %v, want %v", k, info.Has(k), want)
		}
	}
}

func TestG04ECID(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   xpc.Value
		want xpc.Value // nil = absent
		note bool
	}{
		{"int64", xpc.Int64(30), xpc.Uint64(30), false},
		{"negative", xpc.Int64(-1), nil, true},
		{"uint64", xpc.Uint64(1 << 63), xpc.Uint64(1 << 63), false},
		{"string", xpc.String("30"), nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := factsAll()
			f.Handshake.Set("UniqueChipID", tt.in)
			info, notes, err := DeviceInfo(f)
			if err != nil {
				t.Fatal(err)
			}
			got := info.Get("ecid")
			if (got == nil) != (tt.want == nil) || (got != nil && !SameValue(got, tt.want)) {
				t.Fatalf("ecid = %#v, want %#v", got, tt.want)
			}
			if (len(notes) > 0) != tt.note {
				t.Errorf("notes = %v, want a note: %v", notes, tt.note)
			}
			if tt.note {
				if r := Answer(reqPair(), f); len(r.Notes) == 0 {
					t.Error("Answer does not pass the note on for logging")
				}
			}
		})
	}
}

func TestG05KindDiscipline(t *testing.T) {
	reply := mustReply(t, reqPair(), factsAll())
	info := snapshotInfo(t, reply)
	kinds := []struct {
		v    xpc.Value
		want xpc.Kind
		name string
	}{
		{info.Get("identifier"), xpc.KindUUID, "identifier"},
		{at(t, info, "serviceDeviceIdentifier", "uuid", "identifier"), xpc.KindUUID, "serviceDeviceIdentifier.uuid.identifier"},
		{at(t, reply, KeyOutput, "updatedSnapshot", "monotonicIdentifier"), xpc.KindInt64, "monotonicIdentifier"},
		{info.Get("preparednessState"), xpc.KindInt64, "preparednessState"},
		{info.Get("ecid"), xpc.KindUint64, "ecid"},
		{info.Get("state"), xpc.KindString, "deviceInfo.state"},
	}
	for _, k := range kinds {
		if k.v == nil || k.v.Kind() != k.want {
			t.Errorf("%s: kind %v, want %v", k.name, kindOf(k.v), k.want)
		}
	}
	for _, p := range [][]string{{KeyOutput, "updatedSnapshot", "state"}, {KeyOutput, "outcome"}} {
		d := dictAt(t, reply, p...)
		if d.Len() != 1 {
			t.Fatalf("%v has %d keys, want 1", p, d.Len())
		}
		for _, v := range d.All() {
			if e, ok := v.(*xpc.Dict); !ok || e.Len() != 0 {
				t.Errorf("%v: case payload %#v, want an empty dictionary", p, v)
			}
		}
	}
}

func TestG06DDIAndDeveloperModeHonesty(t *testing.T) {
	f := factsAll()
	f.DDI.Mounted = false
	f.DeveloperMode = DeveloperModeDisabled
	f.PowerAssertion = false
	reply := mustReply(t, reqPair(), f)
	info := snapshotInfo(t, reply)
	if info.String("pairingState") != "paired" || info.Bool("areDeveloperDiskImageServicesAvailable") ||
		info.String("state") != "connected" {
		t.Fatalf("deviceInfo %v/%v/%v", info.String("pairingState"), info.Bool("areDeveloperDiskImageServicesAvailable"), info.String("state"))
	}
	// Only extendedDeviceInfoLoaded remains; its bit is unconfirmed, so
	// assert what is known.
	if p := info.Int64("preparednessState"); p == 15 || p == 0 {
		t.Errorf("preparednessState = %d, want neither 15 nor 0", p)
	}
	if !SameValue(at(t, reply, KeyOutput, "outcome"), EnumCase("success")) {
		t.Error("outcome is not success")
	}
}

func TestG07PairingState(t *testing.T) {
	for _, tt := range []struct {
		rec   PairRecordState
		setup bool
		want  string
	}{
		{PairVerified, false, "paired"},
		{PairVerified, true, "paired"},
		{PairAbsent, true, "pairingInProgress"},
		{PairAbsent, false, "unpaired"},
		{PairPresent, false, "unpaired"},
	} {
		f := &Facts{PairRecord: tt.rec, PairSetupInProgress: tt.setup}
		if got := PairingState(f); got != tt.want {
			t.Errorf("PairingState(%v, setup %v) = %q, want %q", tt.rec, tt.setup, got, tt.want)
		}
	}
	for _, rec := range []PairRecordState{PairAbsent, PairPresent} {
		f := factsAll()
		f.PairRecord = rec
		wantPassthrough(t, reqPair(), f)
	}
}

func TestG08PreparednessExtremes(t *testing.T) {
	if p := Preparedness(factsAll()); p != 15 {
		t.Errorf("all flags: %d, want 15", p)
	}
	f := factsAll()
	f.PowerAssertion, f.ExtendedInfoLoaded, f.DDI.Mounted, f.DeveloperMode = false, false, false, DeveloperModeDisabled
	if p := Preparedness(f); p != 0 {
		t.Errorf("no flags: %d, want 0", p)
	}
	f.DeveloperMode = DeveloperModeUnknown // unknown is not claimed
	if p := Preparedness(f); p != 0 {
		t.Errorf("unknown developer mode: %d, want 0", p)
	}
}

func TestG09EchoExactness(t *testing.T) {
	req := reqPair()
	// A version with odd but legal types must come back exactly.
	req.Set(KeyCoreDeviceVersion, xpc.NewDict("components", xpc.Array{xpc.Uint64(629), xpc.Uint64(3), xpc.Uint64(0), xpc.Uint64(0), xpc.Uint64(0)},
		"originalComponentsCount", xpc.Int64(2), "stringValue", xpc.String("629.3"), "extra", xpc.Data{1, 2}))
	reply := mustReply(t, req, factsAll())
	for _, k := range echoedKeys {
		if !SameValue(req.Get(k), reply.Get(k)) {
			t.Errorf("%s not echoed exactly", k)
		}
	}
	if c := dictAt(t, reply, KeyCoreDeviceVersion).Array("components"); c[0].Kind() != xpc.KindUint64 {
		t.Error("components element kind changed")
	}
	if v := dictAt(t, reply, KeyCoreDeviceVersion).Get("originalComponentsCount"); v.Kind() != xpc.KindInt64 {
		t.Error("originalComponentsCount kind changed")
	}
	// A reply whose echo differs in kind only fails validation.
	bad := mustReply(t, req, factsAll())
	bad.Dict(KeyCoreDeviceVersion).Set("originalComponentsCount", xpc.Uint64(2))
	if err := ValidateReply(req, bad, DeviceConnectionChangeResultType); err == nil {
		t.Error("an echo with a changed kind validated")
	}
}

func TestG10VoidOutputAndSideChannel(t *testing.T) {
	req := request(ActionPrefix+"acquireusageassertion", xpc.NewDict("reason", xpc.String("xcode"),
		"sideChannel", xpc.NewDict("endpoint", xpc.NewHandle(xpc.KindEndpoint, 7))))
	// Today the AssertionFulfilledMessage schema is unknown, so the whole
	// action passes through (flip when it is captured).
	r := wantPassthrough(t, req, factsAll())
	if !strings.Contains(r.Reason, "schema unknown") {
		t.Errorf("reason %q does not name the unknown schema", r.Reason)
	}
	if _, err := AssertionFulfilledMessage(factsAll()); !errors.Is(err, ErrSchemaUnknown) {
		t.Errorf("AssertionFulfilledMessage: %v, want ErrSchemaUnknown", err)
	}
	// The shape that will be sent once it is: output {} (not null, not
	// absent) validates as Void; a follow-up addresses the handle.
	out, follow, err := answerAcquireUsageAssertionWith(req, factsAll(), xpc.NewDict("stand-in", xpc.Bool(true)))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := out.(*xpc.Dict); !ok || d.Len() != 0 {
		t.Fatalf("output %#v, want {}", out)
	}
	if len(follow) != 1 || follow[0].Kind != FollowupSideChannelSend {
		t.Fatalf("followups %#v", follow)
	}
	if id, ok := follow[0].Payload.Get("endpoint").(xpc.Opaque).Handle(); !ok || id != 7 {
		t.Errorf("follow-up endpoint %v", follow[0].Payload.Get("endpoint"))
	}
	r2, _ := ParseRequest(req)
	if err := ValidateReply(req, r2.reply(out), VoidType); err != nil {
		t.Errorf("Void reply: %v", err)
	}
	if err := ValidateReply(req, r2.reply(xpc.Null{}), VoidType); err == nil {
		t.Error("null Void output validated")
	}
	// Without an endpoint or a tunnel there is nothing to do.
	if _, _, err := answerAcquireUsageAssertionWith(request(ActionPrefix+"acquireusageassertion", nil), factsAll(), xpc.NewDict()); !errors.Is(err, ErrNoSideChannel) {
		t.Errorf("no endpoint: %v", err)
	}
}

// answerAcquireUsageAssertionWith is answerAcquireUsageAssertion with a
// stand-in AFM, to check the shape the reply will have.
func answerAcquireUsageAssertionWith(req *xpc.Dict, f *Facts, afm *xpc.Dict) (xpc.Value, []Followup, error) {
	r, err := ParseRequest(req)
	if err != nil {
		return nil, nil, err
	}
	ep, ok := findEndpoint(r.Input)
	if !ok {
		return nil, nil, ErrNoSideChannel
	}
	send := xpc.NewDict("endpoint", ep, "message", afm, "keepOpen", xpc.Bool(false))
	return xpc.NewDict(), []Followup{{Kind: FollowupSideChannelSend, Payload: send}}, nil
}

func TestG11ForeignDevice(t *testing.T) {
	req := reqPair()
	req.Set(KeyDeviceIdentifier, xpc.String("11111111-2222-3333-4444-555555555555"))
	wantPassthrough(t, req, factsAll())
	wantPassthrough(t, reqPair(), nil)
	// Case does not matter for our own device.
	req.Set(KeyDeviceIdentifier, xpc.String(uuidD.String()))
	mustReply(t, req, factsAll())
}

func TestG12NotAllowListed(t *testing.T) {
	wantPassthrough(t, request(ActionPrefix+"somethingelse", nil), factsAll())
}

func TestG13NonAction(t *testing.T) {
	r := wantPassthrough(t, xpc.NewDict("mangledTypeName", xpc.String("10CoreDevice26DeviceManagerCheckInRequestV"), "value", xpc.NewDict()), factsAll())
	if r.Action != "" {
		t.Errorf("action %q for a non-action", r.Action)
	}
	// A featureIdentifier never makes a message an action on this link.
	wantPassthrough(t, xpc.NewDict("CoreDevice.featureIdentifier", xpc.String("com.apple.coredevice.feature.getdeviceinfo")), factsAll())
}

func TestG14TunnelDown(t *testing.T) {
	f := factsAll()
	f.Tunnel = TunnelDown
	if _, _, err := DeviceInfo(f); !errors.Is(err, ErrNoHonestState) {
		t.Fatalf("DeviceInfo: %v, want ErrNoHonestState", err)
	}
	for _, a := range Actions {
		wantPassthrough(t, request(a.ID, nil), f)
	}
}

func TestG15DisableDDIServices(t *testing.T) {
	f := factsAll()
	f.DDI.Mounted = false
	reply := mustReply(t, request(ActionPrefix+"disableddiservicesaction", nil), f)
	out := dictAt(t, reply, KeyOutput)
	if got := strings.Join(out.Keys(), ","); got != "state,capabilityImplementations,deviceInfo,monotonicIdentifier" {
		t.Fatalf("output keys %s", got)
	}
	info := out.Dict("deviceInfo")
	if info.Bool("areDeveloperDiskImageServicesAvailable") || info.Int64("preparednessState")&PreparedDeveloperDiskImageServices != 0 {
		t.Error("DDI reported available")
	}
	// With DDI services up, iosmux disabled nothing: CDS's own code runs.
	wantPassthrough(t, request(ActionPrefix+"disableddiservicesaction", nil), factsAll())
}

func TestG16GetTrainName(t *testing.T) {
	f := factsAll()
	f.Handshake.Set("TrainName", xpc.String("Luck")) // not a source iosmux trusts
	wantPassthrough(t, request(ActionPrefix+"gettrainname", nil), f)
}

// G17, adjusted: the list is answered only when iosmux grants the
// assertions. Today acquireusageassertion passes through (G10), so CDS
// holds its own assertions and an empty list from iosmux could be false:
// both an empty and a non-empty registry pass through. (The spec's G17,
// [] for an empty registry, returns once the AssertionFulfilledMessage is
// captured and iosmux answers acquireusageassertion.)
func TestG17ListUsageAssertions(t *testing.T) {
	r := wantPassthrough(t, request(ActionPrefix+"listusageassertions", nil), factsAll())
	if !strings.Contains(r.Reason, "acquireusageassertion passes through") {
		t.Errorf("reason %q does not say CDS grants the assertions", r.Reason)
	}
	f := factsAll()
	f.UsageAssertions = 1
	wantPassthrough(t, request(ActionPrefix+"listusageassertions", nil), f)
}

func TestG18DeviceIdentifier(t *testing.T) {
	v, err := UUIDIdentifier(uuidD, "").Value()
	if err != nil {
		t.Fatal(err)
	}
	want := xpc.NewDict("uuid", xpc.NewDict("identifier", uuidD, "domain", xpc.String("")))
	if !SameValue(v, want) {
		t.Errorf("uuid case %v", v)
	}
	v, _ = UUIDIdentifier(uuidD, "x").Value()
	if v.Dict("uuid").String("domain") != "x" {
		t.Error("domain not kept")
	}
	if err := Validate(DeviceIdentifierType, v); err != nil {
		t.Error(err)
	}
	if _, err := (DeviceIdentifier{ECID: ptr(uint64(30))}).Value(); !errors.Is(err, ErrSchemaUnknown) {
		t.Errorf("ecid case: %v, want ErrSchemaUnknown", err)
	}
	var de *DecodingError
	if err := Validate(DeviceIdentifierType, xpc.NewDict("ecid", xpc.NewDict("value", xpc.Uint64(30)))); !errors.As(err, &de) || de.Kind != Unverifiable {
		t.Errorf("ecid value validated as %v, want unverifiable", err)
	}
}

func TestG19Sets(t *testing.T) {
	in := []xpc.Value{xpc.String("b"), xpc.String("a"), xpc.String("b"), xpc.String("c"), xpc.String("a")}
	s, err := SetOf(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Strings(), ","); got != "a,b,c" {
		t.Fatalf("SetOf = %s, want a,b,c", got)
	}
	again, _ := SetOf(s)
	if !SameValue(s, again) {
		t.Error("re-encoding a set changed it")
	}
	info := snapshotInfo(t, mustReply(t, reqPair(), factsAll()))
	if a, ok := info.Get("defaultUserCredentials").(xpc.Array); !ok || len(a) != 0 {
		t.Errorf("defaultUserCredentials = %#v, want []", info.Get("defaultUserCredentials"))
	}
	if DefaultUserCredentialType.Known() {
		t.Error("DefaultUserCredential claims a known schema")
	}
}

// G20–G35: mutations of G01's reply and the class and path each must fail
// with.
func TestG20to35Mutations(t *testing.T) {
	out := func(r *xpc.Dict) *xpc.Dict { return r.Dict(KeyOutput) }
	snap := func(r *xpc.Dict) *xpc.Dict { return out(r).Dict("updatedSnapshot") }
	info := func(r *xpc.Dict) *xpc.Dict { return snap(r).Dict("deviceInfo") }
	uuidCase := func(r *xpc.Dict) *xpc.Dict { return info(r).Dict("serviceDeviceIdentifier").Dict("uuid") }
	text := xpc.String(uuidD.String())
	snapPath := KeyOutput + ".updatedSnapshot"
	infoPath := snapPath + ".deviceInfo"
	tests := []struct {
		name   string
		mutate func(*xpc.Dict)
		kind   ErrorKind
		path   string
		detail string // key, type suffix or message part
	}{
		{"G20", func(r *xpc.Dict) { r.Set(KeyOutput, xpc.NewDict()) }, DataCorrupted, KeyOutput, "DeviceConnectionChangeResult"},
		{"G21", func(r *xpc.Dict) { r.Delete(KeyOutput) }, ValueNotFound, "<root>", KeyOutput},
		{"G22", func(r *xpc.Dict) { r.Set(KeyOutput, xpc.Null{}) }, TypeMismatch, KeyOutput, "DeviceConnectionChangeResult"},
		{"G23", func(r *xpc.Dict) { out(r).Set("outcome", xpc.String("connected")) }, TypeMismatch, KeyOutput + ".outcome", "Outcome.CodingKeys"},
		{"G24", func(r *xpc.Dict) { out(r).Set("outcome", xpc.NewDict("connected", xpc.NewDict())) }, TypeMismatch, KeyOutput + ".outcome", "Invalid number of keys, expected one"},
		{"G25", func(r *xpc.Dict) {
			out(r).Set("outcome", xpc.NewDict("success", xpc.NewDict(), "failure", xpc.NewDict()))
		}, TypeMismatch, KeyOutput + ".outcome", "Invalid number of keys, expected one"},
		{"G26", func(r *xpc.Dict) {
			out(r).Set("updatedSnapshot", xpc.NewDict("state", EnumCase("connected")))
		}, KeyNotFound, snapPath, "capabilityImplementations"},
		{"G27", func(r *xpc.Dict) { snap(r).Delete("deviceInfo") }, KeyNotFound, snapPath, "deviceInfo"},
		{"G28", func(r *xpc.Dict) {
			info(r).Set("serviceDeviceIdentifier", xpc.NewDict("uuid", xpc.NewDict("_0", uuidD, "_1", xpc.String(""))))
		}, KeyNotFound, infoPath + ".serviceDeviceIdentifier.uuid", "identifier"},
		{"G29", func(r *xpc.Dict) { uuidCase(r).Set("identifier", text) }, TypeMismatch, infoPath + ".serviceDeviceIdentifier.uuid.identifier", "UUID"},
		{"G30", func(r *xpc.Dict) { uuidCase(r).Delete("domain") }, KeyNotFound, infoPath + ".serviceDeviceIdentifier.uuid", "domain"},
		{"G31", func(r *xpc.Dict) { info(r).Set("identifier", text) }, TypeMismatch, infoPath + ".identifier", "UUID"},
		{"G32", func(r *xpc.Dict) { info(r).Set("state", EnumCase("connected")) }, TypeMismatch, infoPath + ".state", "String"},
		{"G33", func(r *xpc.Dict) { snap(r).Delete("monotonicIdentifier") }, KeyNotFound, snapPath, "monotonicIdentifier"},
		{"G34", func(r *xpc.Dict) { snap(r).Set("monotonicIdentifier", xpc.Uint64(1)) }, TypeMismatch, snapPath + ".monotonicIdentifier", "Int64"},
		{"G35", func(r *xpc.Dict) {
			info(r).Set("preparednessState", xpc.NewDict("rawValue", xpc.Int64(15)))
		}, TypeMismatch, infoPath + ".preparednessState", "Int64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustReply(t, reqPair(), factsAll())
			tt.mutate(r)
			err := ValidateReply(reqPair(), r, DeviceConnectionChangeResultType)
			var de *DecodingError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DecodingError", err)
			}
			if de.Kind != tt.kind || de.PathString() != tt.path {
				t.Fatalf("got %v, want %v at %s", de, tt.kind, tt.path)
			}
			if !strings.Contains(de.Key+"|"+de.Type+"|"+de.Msg, tt.detail) {
				t.Errorf("error %v does not mention %q", de, tt.detail)
			}
		})
	}
}

func TestG39Monotonic(t *testing.T) {
	var c Counter
	f := factsAll()
	c.Stamp(f)
	first := f.Monotonic
	s1, _, _ := DeviceStateSnapshot(f)
	s1b, _, _ := DeviceStateSnapshot(f)
	if !SameValue(s1, s1b) {
		t.Fatal("two builds from identical facts differ")
	}
	g := factsAll()
	if c.Stamp(g); g.Monotonic != first {
		t.Fatalf("unchanged facts: %d, want %d", g.Monotonic, first)
	}
	g.DDI.Mounted = false
	if !c.Stamp(g) || g.Monotonic <= first {
		t.Fatalf("changed facts: %d, want > %d", g.Monotonic, first)
	}
	s2, _, _ := DeviceStateSnapshot(g)
	if s2.Int64("monotonicIdentifier") <= s1.Int64("monotonicIdentifier") {
		t.Error("snapshot counter did not increase")
	}
}

func TestG40NamePolicy(t *testing.T) {
	f := factsAll()
	f.DeviceName = nil
	info, _, err := DeviceInfo(f)
	if err != nil {
		t.Fatal(err)
	}
	if info.Has("name") {
		t.Errorf("name %q without a source", info.String("name"))
	}
	f.Label = ptr("Lab iPhone 7")
	info, _, _ = DeviceInfo(f)
	if info.String("name") != "Lab iPhone 7" {
		t.Errorf("label policy: name %q", info.String("name"))
	}
	f.DeviceName = ptr("Anna's iPhone")
	info, _, _ = DeviceInfo(f)
	if info.String("name") != "Lab iPhone 7" {
		t.Errorf("label policy must win over the device name: %q", info.String("name"))
	}
}

// Every allow-listed action has a disposition, and those without a known
// Output are never answered.
func TestActionsTable(t *testing.T) {
	if len(Actions) != 15 {
		t.Fatalf("%d actions, want 15", len(Actions))
	}
	seen := map[string]bool{}
	for _, a := range Actions {
		if seen[a.ID] || !strings.HasPrefix(a.ID, ActionPrefix) {
			t.Errorf("bad or duplicate id %q", a.ID)
		}
		seen[a.ID] = true
		if a.answer != nil && (a.Output == nil || !a.Output.Known()) {
			t.Errorf("%s answers with an unknown Output", a.Short)
		}
		if a.answer == nil {
			wantPassthrough(t, request(a.ID, nil), factsAll())
		}
	}
	answered := 0
	for _, a := range Actions {
		if Answer(request(a.ID, nil), factsAll()).Disposition == Reply {
			answered++
		}
	}
	if answered != 1 { // pair (disableddiservices needs DDI off; listusageassertions, G17)
		t.Errorf("%d actions answered from FACTS_ALL, want 1", answered)
	}
}
