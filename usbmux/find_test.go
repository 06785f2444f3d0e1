package usbmux

import "testing"

func TestOnePerDevice(t *testing.T) {
	devs := []DeviceEntry{
		{DeviceID: 1, SerialNumber: "00008110001A2B3C4D5E6F70", ConnectionType: ConnectionNetwork},
		{DeviceID: 2, SerialNumber: "AAAA", ConnectionType: ConnectionNetwork},
		{DeviceID: 3, SerialNumber: "00008110-001A2B3C4D5E6F70", ConnectionType: ConnectionUSB},
	}
	one := OnePerDevice(devs)
	if len(one) != 2 || one[0].DeviceID != 3 || one[1].DeviceID != 2 {
		t.Errorf("OnePerDevice = %+v, want devices 3 (USB) and 2", one)
	}
	tests := []struct {
		name, udid string
		want       uint32
		ok         bool
	}{
		{"dashes and case ignored, USB preferred", "00008110-001a2b3c4d5e6f70", 3, true},
		{"network only", "aaaa", 2, true},
		{"absent", "BBBB", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := FindDevice(devs, tt.udid)
			if ok != tt.ok || d.DeviceID != tt.want {
				t.Errorf("FindDevice(%q) = %d, %v; want %d, %v", tt.udid, d.DeviceID, ok, tt.want, tt.ok)
			}
		})
	}
}
