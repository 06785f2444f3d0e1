package rsdapi

import "testing"

// FuzzParseTunnels: GET /'s body from any tunneld decodes or fails with an
// error, never a panic; every decoded entry's RSD parses or errors.
func FuzzParseTunnels(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"00008110-001A2B3C4D5E6F70":[{"tunnel-address":"fd7b:e5b:6f53::1","tunnel-port":64337,"interface":"usbmux-00008110-001A2B3C4D5E6F70-USB"}]}`))
	f.Add([]byte(`{"U":[{"tunnel-address":"127.0.0.2","tunnel-port":58783,"interface":"k"},{"tunnel-address":"x","tunnel-port":70000}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := parseTunnels(b)
		if err != nil {
			return
		}
		for _, l := range ls {
			l.RSD()
		}
	})
}
