package discovery

import (
	"context"
	"iter"
	"time"

	"github.com/iosmux/iosmux/usbmux"
)

// NewUsbmuxMonitor watches usbmuxd through c: a Listen stream kept open
// across usbmuxd restarts, re-established 2 s after a loss at first
// (pymobiledevice3's USBMUX_INTERVAL), backing off to 30 s.
func NewUsbmuxMonitor(c *usbmux.Client) *UsbmuxMonitor {
	return &UsbmuxMonitor{Events: UsbmuxEvents(c, usbmux.WatchConfig{MinBackoff: 2 * time.Second, MaxBackoff: 30 * time.Second})}
}

// UsbmuxEvents adapts a usbmux.Watcher to UsbmuxMonitor.Events.
func UsbmuxEvents(c *usbmux.Client, cfg usbmux.WatchConfig) func(context.Context) iter.Seq[MuxEvent] {
	return func(ctx context.Context) iter.Seq[MuxEvent] {
		return func(yield func(MuxEvent) bool) {
			w := c.Watch(ctx, cfg)
			defer w.Close()
			for ev := range w.Events() {
				var me MuxEvent
				switch ev.Kind {
				case usbmux.Attached:
					me = MuxEvent{
						Kind: MuxAttached, DeviceID: ev.DeviceID, SerialNumber: ev.Device.SerialNumber,
						ConnectionType: ev.Device.ConnectionType, ProductID: ev.Device.ProductID,
					}
				case usbmux.Detached:
					me = MuxEvent{Kind: MuxDetached, DeviceID: ev.DeviceID}
				case usbmux.Connected:
					me = MuxEvent{Kind: MuxConnected}
				case usbmux.Disconnected:
					me = MuxEvent{Kind: MuxDisconnected}
				default:
					continue // Paired: nothing to discover
				}
				if !yield(me) {
					return
				}
			}
		}
	}
}

// UsbmuxSighting is the Attached event a usbmux monitor reports for d: a
// device found by listing usbmuxd's devices, as establishment takes it.
func UsbmuxSighting(d usbmux.DeviceEntry) Event {
	return Event{
		Kind: Attached, Source: SourceUsbmux, Conn: ConnUsbmux,
		UDID: d.SerialNumber, DeviceID: d.DeviceID,
		ConnectionType: d.ConnectionType, ProductID: d.ProductID,
	}
}
