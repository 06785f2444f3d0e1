package sim

import (
	"errors"
	"fmt"
	"time"
)

// Lifecycle faults (cable, reboot) and connection faults (stall, reset,
// garbage, Trust) of a Device. Each acts on the whole device at once.

var errClosed = errors.New("sim: device closed")

// Unplug pulls the cable: the device leaves usbmuxd (Detached), its USB-NCM
// link and loopback RSD go away and every USB connection drops (tunnels over
// USB die with them). Network pairing stays up.
func (d *Device) Unplug() error {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if d.life.Err() != nil {
		return errClosed
	}
	d.plugged = false
	b := d.currentBoot()
	if b == nil {
		return nil // down: stays unplugged when it comes back
	}
	b.unplug()
	d.mu.Lock()
	d.setStateLocked(StateUnplugged)
	d.mu.Unlock()
	d.log.Info("sim: unplugged", "udid", d.id.UDID)
	return nil
}

// Replug puts the cable back: a new usbmuxd Attached (with a new DeviceID)
// and the USB-NCM link comes back, with the same boot.
func (d *Device) Replug() error {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if d.life.Err() != nil {
		return errClosed
	}
	d.plugged = true
	b := d.currentBoot()
	if b == nil || b.plug != nil {
		return nil
	}
	if err := b.plugIn(); err != nil {
		return fmt.Errorf("sim: %s: replug: %w", d.id.UDID, err)
	}
	d.mu.Lock()
	d.setStateLocked(StatePlugged)
	d.mu.Unlock()
	d.log.Info("sim: replugged", "udid", d.id.UDID)
	return nil
}

// Reboot takes the device down at once and brings it back after down:
// new BootSessionUUID, new RSD identity, new ports, every connection and
// tunnel gone. It returns immediately; WaitState(StatePlugged) waits for the
// return.
func (d *Device) Reboot(down time.Duration) error {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if d.life.Err() != nil {
		return errClosed
	}
	d.shutdownLocked()
	d.mu.Lock()
	d.setStateLocked(StateDown)
	d.mu.Unlock()
	d.log.Info("sim: rebooting", "udid", d.id.UDID, "down", down)
	d.wg.Go(func() {
		t := time.NewTimer(down)
		defer t.Stop()
		select {
		case <-t.C:
		case <-d.life.Done():
			return
		}
		d.opMu.Lock()
		defer d.opMu.Unlock()
		if d.life.Err() != nil || d.currentBoot() != nil {
			return
		}
		if err := d.startLocked(); err != nil {
			d.log.Error("sim: boot after reboot failed", "udid", d.id.UDID, "err", err)
		}
	})
	return nil
}

// Stall freezes (on) or thaws (off) every connection of the device: bytes
// in flight are held and nothing is answered, as a wedged device behaves.
func (d *Device) Stall(on bool) {
	d.gate.setStall(on)
	d.log.Info("sim: stall", "udid", d.id.UDID, "on", on)
}

// Reset drops every open connection the hard way (TCP RST where there is
// TCP) once it has carried afterBytes more bytes; 0 drops them now.
func (d *Device) Reset(afterBytes int64) {
	if b := d.currentBoot(); b != nil {
		b.conns.each(^surface(0), func(c *simConn) { c.armReset(afterBytes) })
	}
	d.log.Info("sim: reset", "udid", d.id.UDID, "afterBytes", afterBytes)
}

// Garbage makes every byte the device sends random while on.
func (d *Device) Garbage(on bool) {
	d.gate.setGarbage(on)
	d.log.Info("sim: garbage replies", "udid", d.id.UDID, "on", on)
}

// SetTrust sets the answer to future Trust dialogs (TrustDeny: "Trust
// refused").
func (d *Device) SetTrust(t Trust) {
	d.trust.Store(int32(t))
	d.log.Info("sim: trust", "udid", d.id.UDID, "answer", t)
}

// Faults reports the fault switches now in effect.
func (d *Device) Faults() FaultState {
	return FaultState{Stalled: d.gate.stalled(), Garbage: d.gate.garbling(), Trust: Trust(d.trust.Load()).String()}
}

// FaultState is the device's current fault switches.
type FaultState struct {
	Stalled bool   `json:"stalled"`
	Garbage bool   `json:"garbage"`
	Trust   string `json:"trust"`
}
