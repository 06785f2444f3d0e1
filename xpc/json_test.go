package xpc

import (
	"encoding/json"
	"math"
	"testing"
)

// TestAppendJSONTyped: every XPC type renders as valid JSON with its wire
// type visible (the wire log's style).
func TestAppendJSONTyped(t *testing.T) {
	u, _ := ParseUUID("6f1d0e8a-3b2c-4d5e-8f90-a1b2c3d4e5f6")
	d := NewDict("s", String("h\"é\n"), "i", Int64(-5), "u", Uint64(math.MaxUint64),
		"f", Double(1.5), "inf", Double(math.Inf(1)), "b", Bool(true), "n", Null{},
		"data", Data{1, 2, 3}, "uuid", u, "date", Date(1700000000123000000),
		"a", Array{String("x"), NewDict()}, "ft", NewFileTransfer(1, 42))
	got := string(AppendJSON(nil, d, JSONTyped))
	want := `{"s":"h\"é\n","i":{"int64":"-5"},"u":{"uint64":"18446744073709551615"},"f":{"double":1.5},` +
		`"inf":{"double":"+Inf"},"b":true,"n":null,"data":{"data":"AQID"},"uuid":{"uuid":"6f1d0e8a-3b2c-4d5e-8f90-a1b2c3d4e5f6"},` +
		`"date":{"date":"2023-11-14T22:13:20.123Z"},"a":["x",{}],"ft":{"fileTransfer":{"id":"1","object":{"s":{"uint64":"42"}}}}}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Error("not valid JSON")
	}
}
