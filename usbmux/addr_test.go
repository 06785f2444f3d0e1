package usbmux

import "testing"

func TestParseAddr(t *testing.T) {
	tests := []struct {
		name, in string
		want     Addr
		bad      bool
	}{
		{"plain path", "/var/run/usbmuxd", Addr{"unix", "/var/run/usbmuxd"}, false},
		{"libusbmuxd UNIX:", "UNIX:/tmp/mux", Addr{"unix", "/tmp/mux"}, false},
		{"appium unix:", "unix:/tmp/mux", Addr{"unix", "/tmp/mux"}, false},
		{"go-ios unix://", "unix:///tmp/mux", Addr{"unix", "/tmp/mux"}, false},
		{"go-ios upper UNIX://", "UNIX:///tmp/mux", Addr{"unix", "/tmp/mux"}, false},
		{"unix path with colon", "unix:/tmp/a:b", Addr{"unix", "/tmp/a:b"}, false},
		{"tcp://", "tcp://127.0.0.1:27015", Addr{"tcp", "127.0.0.1:27015"}, false},
		{"TCP:// upper", "TCP://localhost:27015", Addr{"tcp", "localhost:27015"}, false},
		{"host:port", "127.0.0.1:27015", Addr{"tcp", "127.0.0.1:27015"}, false},
		{"v6", "[::1]:27015", Addr{"tcp", "[::1]:27015"}, false},
		{"empty", "", Addr{}, true},
		{"unix without path", "unix:", Addr{}, true},
		{"unix:// without path", "unix://", Addr{}, true},
		{"bad port", "127.0.0.1:http", Addr{}, true},
		{"port zero", "127.0.0.1:0", Addr{}, true},
		{"port too big", "127.0.0.1:70000", Addr{}, true},
		{"no host", ":27015", Addr{}, true},
		{"v6 without brackets", "::1:27015", Addr{}, true},
		{"unknown scheme", "udp://1.2.3.4:5", Addr{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAddr(tt.in)
			if tt.bad {
				if err == nil {
					t.Errorf("ParseAddr(%q) = %+v; want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseAddr(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			// String gives a form ParseAddr reads back.
			if again, err := ParseAddr(got.String()); err != nil || again != got {
				t.Errorf("ParseAddr(%q) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}
