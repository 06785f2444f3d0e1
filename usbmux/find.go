package usbmux

// OnePerDevice returns devs with one entry per UDID, in listing order: a
// device listed twice (USB and Network) keeps its USB entry, as pmd3
// prefers it.
func OnePerDevice(devs []DeviceEntry) []DeviceEntry {
	var out []DeviceEntry
	for _, d := range devs {
		i := indexUDID(out, d.SerialNumber)
		switch {
		case i < 0:
			out = append(out, d)
		case d.ConnectionType == ConnectionUSB && out[i].ConnectionType != ConnectionUSB:
			out[i] = d
		}
	}
	return out
}

// FindDevice returns the entry of devs for udid (dashes and case ignored,
// USB preferred).
func FindDevice(devs []DeviceEntry, udid string) (DeviceEntry, bool) {
	one := OnePerDevice(devs)
	if i := indexUDID(one, udid); i >= 0 {
		return one[i], true
	}
	return DeviceEntry{}, false
}

func indexUDID(devs []DeviceEntry, udid string) int {
	for i, d := range devs {
		if SameUDID(d.SerialNumber, udid) {
			return i
		}
	}
	return -1
}
