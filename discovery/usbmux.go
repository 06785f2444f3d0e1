package discovery

import (
	"context"
	"errors"
	"iter"
	"slices"
)

// MuxEventKind says what a usbmuxd stream reported.
type MuxEventKind int

// usbmuxd stream events. Connected and Disconnected describe the stream
// itself: after Connected usbmuxd re-announces every present device.
const (
	MuxAttached MuxEventKind = iota + 1
	MuxDetached
	MuxConnected
	MuxDisconnected
)

// MuxEvent is what discovery needs from one usbmuxd Listen event. Detached
// events carry only DeviceID.
type MuxEvent struct {
	Kind           MuxEventKind
	DeviceID       uint32
	SerialNumber   string
	ConnectionType string
	ProductID      int
}

// UsbmuxMonitor turns a usbmuxd Listen stream (kept open across usbmuxd
// restarts by whoever provides it) into Attached and Detached events.
// Detached events of usbmuxd name only a DeviceID; the monitor remembers
// which device that was. When the stream drops, every device it reported is
// Detached (usbmuxd re-announces the present ones once it is back), so no
// device outlives a lost stream. Repeated Attached events for a device
// already reported with the same facts are swallowed.
type UsbmuxMonitor struct {
	// Events yields the stream until ctx ends.
	Events func(ctx context.Context) iter.Seq[MuxEvent]
}

// Run implements Monitor.
func (m *UsbmuxMonitor) Run(ctx context.Context, emit func(Event)) error {
	known := map[uint32]Event{}
	for ev := range m.Events(ctx) {
		switch ev.Kind {
		case MuxAttached:
			e := Event{
				Kind: Attached, Source: SourceUsbmux, Conn: ConnUsbmux,
				UDID: ev.SerialNumber, DeviceID: ev.DeviceID,
				ConnectionType: ev.ConnectionType, ProductID: ev.ProductID,
			}
			if old, ok := known[ev.DeviceID]; ok {
				if old.UDID == e.UDID && old.ConnectionType == e.ConnectionType && old.ProductID == e.ProductID {
					continue
				}
				// A reused DeviceID for another device: end the old one.
				old.Kind = Detached
				emit(old)
			}
			known[ev.DeviceID] = e
			emit(e)
		case MuxDetached:
			if e, ok := known[ev.DeviceID]; ok {
				delete(known, ev.DeviceID)
				e.Kind = Detached
				emit(e)
			}
		case MuxDisconnected:
			ids := make([]uint32, 0, len(known))
			for id := range known {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			for _, id := range ids {
				e := known[id]
				delete(known, id)
				e.Kind = Detached
				emit(e)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("discovery: usbmux event stream ended")
}
