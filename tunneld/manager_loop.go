package tunneld

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/tunnel"
)

// device is the loop's state for one device (by normalised UDID).
type device struct {
	id        string
	udid      string   // as first reported, for logs
	attempt   *attempt // non-nil while connecting
	live      *live    // non-nil while up
	retryAt   time.Time
	holdUntil time.Time // after an API cancel
	backoff   retry.Backoff
	waiters   []chan<- startResult
	settled   bool // its first attempt has ended
	// slow is the back-off after retrySlow failures; held is the last
	// such failure while its wait lasts (Start answers with it instead
	// of raising the Trust dialog again).
	slow retry.Backoff
	held error
	// dead are paths whose last attempt failed with retryOnAttach, by
	// Event.Key: not tried again until that path is attached anew.
	dead map[string]error
}

type attempt struct {
	path    discovery.Event
	cancel  context.CancelFunc
	started time.Time
}

// live is one established tunnel. Its watcher goroutine closes the link
// (when it ends by itself or stop is closed), accounts its bytes and
// reports the end to the loop.
type live struct {
	entry    entry
	link     link
	pathKey  string
	dev      *device
	stop     chan struct{}
	stopOnce sync.Once
}

func (l *live) close() { l.stopOnce.Do(func() { close(l.stop) }) }

type startResult struct {
	entry entry
	err   error
}

func (m *manager) run() {
	defer m.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var armed time.Time
	for {
		if next := m.nextRetry(); !next.Equal(armed) {
			timer.Stop()
			armed = next
			if !next.IsZero() {
				timer.Reset(time.Until(next))
			}
		}
		select {
		case f := <-m.ops:
			f()
		case <-timer.C:
			armed = time.Time{}
			m.retryDue()
		case <-m.quit:
			m.shutdown()
			close(m.loopDone)
			return
		}
	}
}

func (m *manager) newDevice(id, udid string) *device {
	d := &device{id: id, udid: udid, backoff: m.cfg.Backoff, slow: m.cfg.SlowBackoff, dead: map[string]error{}}
	d.backoff.Reset()
	d.slow.Reset()
	m.devices[id] = d
	m.unsettled.Add(1)
	return d
}

func (m *manager) settle(d *device) {
	if !d.settled {
		d.settled = true
		m.unsettled.Add(-1)
	}
}

func (m *manager) apply(ev discovery.Event) {
	if ev.UDID == "" {
		return // unidentified sighting: nothing to key a tunnel on
	}
	id := discovery.NormalizeUDID(ev.UDID)
	m.tracker.Apply(ev)
	d := m.devices[id]
	switch ev.Kind {
	case discovery.Attached:
		if d == nil {
			d = m.newDevice(id, ev.UDID)
		}
		if d.live == nil && d.attempt == nil {
			// The device answers (again): no reason to sit out its
			// back-off, nor a refusal's (a replug is the user asking
			// again). An API cancel's hold still applies.
			d.backoff.Reset()
			d.slow.Reset()
			d.retryAt, d.held = time.Time{}, nil
		}
		// A path attached anew may work where it failed for good.
		delete(d.dead, ev.Key())
		m.consider(d)
	case discovery.Detached:
		if d == nil {
			return
		}
		key := ev.Key()
		lost := false
		if d.live != nil && d.live.pathKey == key {
			m.teardown(d, "detached")
			lost = true
		}
		if d.attempt != nil && d.attempt.path.Key() == key {
			m.abandon(d)
			lost = true
		}
		if lost {
			d.retryAt = time.Time{} // another path, if any, is tried at once
		}
		m.consider(d)
	}
}

// consider starts an attempt for an idle device whose wait is over, and
// forgets a device that has no path left.
func (m *manager) consider(d *device) {
	if d.live != nil || d.attempt != nil {
		return
	}
	paths := m.tracker.Paths(d.id)
	if len(paths) == 0 {
		m.forget(d)
		return
	}
	i := slices.IndexFunc(paths, func(ev discovery.Event) bool { return d.dead[ev.Key()] == nil })
	if i < 0 {
		return // every path failed for good: wait for one to be attached anew
	}
	now := time.Now()
	if now.Before(d.retryAt) || now.Before(d.holdUntil) {
		return
	}
	m.startAttempt(d, paths[i])
}

func (m *manager) forget(d *device) {
	m.reply(d, startResult{err: errUnknownDevice})
	m.settle(d)
	delete(m.devices, d.id)
}

// nextRetry is the earliest time an idle device is due, zero if none.
func (m *manager) nextRetry() time.Time {
	var next time.Time
	for _, d := range m.devices {
		if d.live != nil || d.attempt != nil {
			continue
		}
		at := d.retryAt
		if d.holdUntil.After(at) {
			at = d.holdUntil
		}
		if at.IsZero() {
			continue
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

func (m *manager) retryDue() {
	for _, d := range m.devices {
		m.consider(d)
	}
}

func (m *manager) startAttempt(d *device, path discovery.Event) {
	ctx, cancel := context.WithTimeout(m.life, m.cfg.AttemptTimeout)
	a := &attempt{path: path, cancel: cancel, started: time.Now()}
	d.attempt = a
	d.retryAt, d.holdUntil = time.Time{}, time.Time{}
	m.log.Debug("tunnel: connecting", "udid", d.udid, "path", pathOf(path))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		est, err := m.cfg.Establisher.Establish(ctx, path)
		cancel()
		if err == nil && (est == nil || est.Link == nil) {
			err = &establish.Error{Device: path.UDID, Step: "establish", Err: errors.New("establisher returned no tunnel")}
		}
		if err == nil {
			est.returned = time.Now()
		}
		if !m.post(func() { m.attemptDone(d, a, est, err) }) && err == nil {
			est.Link.Close() // the manager is gone
		}
	}()
}

// abandon cancels the device's attempt; its result, when it comes, is
// discarded (and its tunnel closed).
func (m *manager) abandon(d *device) {
	d.attempt.cancel()
	d.attempt = nil
	m.settle(d)
	m.reply(d, startResult{err: errAttemptCanceled})
}

func (m *manager) attemptDone(d *device, a *attempt, est *established, err error) {
	if d.attempt != a || m.devices[d.id] != d {
		if err == nil {
			m.closeAsync(est.Link)
		}
		return
	}
	d.attempt = nil
	m.settle(d)
	udid := d.udid
	if err == nil {
		if est.UDID != "" {
			udid = est.UDID
		}
		// pymobiledevice3's second check: the handshake may name a device
		// that another path already tunnels (discovery.md §7.1).
		if o := m.devices[discovery.NormalizeUDID(udid)]; o != nil && o != d && o.live != nil {
			m.closeAsync(est.Link)
			err = &establish.Error{Device: udid, Step: "duplicate", Err: errors.New("another tunnel to this device is up")}
		}
	}
	if err != nil {
		kind := errorKind(err)
		m.countError(kind)
		switch retryOf(err) {
		case retrySlow:
			wait := d.slow.Next()
			d.retryAt, d.held = time.Now().Add(wait), err
			m.log.Warn("tunnel: attempt failed; waiting before asking the device again (replug it to retry now)", "udid", d.udid, "path", pathOf(a.path), "kind", kind, "err", err, "retry_in", wait.Round(time.Second))
		case retryOnAttach:
			d.dead[a.path.Key()] = err
			d.retryAt = time.Time{}
			m.log.Warn("tunnel: attempt failed for good on this path; not retried until the device is plugged in again", "udid", d.udid, "path", pathOf(a.path), "kind", kind, "err", err)
		default:
			wait := d.backoff.Next()
			d.retryAt = time.Now().Add(wait)
			m.log.Warn("tunnel: attempt failed", "udid", d.udid, "path", pathOf(a.path), "kind", kind, "err", err, "retry_in", wait.Round(time.Millisecond))
		}
		m.reply(d, startResult{err: err})
		m.consider(d)
		return
	}

	m.nextID++
	e := entry{
		ID: m.nextID, UDID: udid, Key: pmd3Key(a.path, udid), Interface: est.Interface,
		Address: est.Params.ServerAddress, RSDPort: est.Params.ServerRSDPort, Protocol: est.Protocol,
		Path: a.path, Meta: est.Meta, Created: time.Now(),
	}
	l := &live{entry: e, link: est.Link, pathKey: a.path.Key(), dev: d, stop: make(chan struct{})}
	d.live = l
	d.backoff.Reset()
	d.slow.Reset()
	d.held = nil
	if m.everUp[d.id] {
		m.recon.Add(1)
	}
	m.everUp[d.id] = true
	m.mu.Lock()
	m.table = append(m.table, l)
	m.links[l] = struct{}{}
	m.byPath[pathOf(a.path)]++
	m.mu.Unlock()
	m.watch(l)
	setUp := e.Created.Sub(a.started)
	m.log.Info("tunnel: up", "udid", udid, "pmd3_key", e.Key, "interface", e.Interface, "address", e.Address, "rsd_port", e.RSDPort, "protocol", e.Protocol,
		"set_up", setUp.Round(time.Microsecond))
	if m.cfg.OnSetUp != nil {
		steps := append(slices.Clip(est.Steps), establish.StepTime{Step: stepListed, Took: e.Created.Sub(est.returned)})
		m.cfg.OnSetUp(pathOf(a.path), setUp, steps)
	}
	m.changed()
	m.reply(d, startResult{entry: e})
}

// watch starts l's watcher.
func (m *manager) watch(l *live) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-l.link.Done():
		case <-l.stop:
		}
		l.link.Close()
		st := l.link.Stats()
		m.mu.Lock()
		delete(m.links, l)
		m.ended.SentBytes += st.SentBytes
		m.ended.ReceivedBytes += st.ReceivedBytes
		m.mu.Unlock()
		m.post(func() { m.died(l) })
	}()
}

// closeAsync closes a link that never made it into the table.
func (m *manager) closeAsync(l link) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		l.Close()
	}()
}

// died handles the end of a tunnel the manager did not end itself.
func (m *manager) died(l *live) {
	d := l.dev
	if d.live != l {
		return // torn down already
	}
	d.live = nil
	m.unlist(l)
	err := l.link.Err()
	kind := "tunnel_closed"
	if errors.Is(err, tunnel.ErrDead) {
		kind = "tunnel_dead"
	}
	m.countError(kind)
	wait := d.backoff.Next()
	d.retryAt = time.Now().Add(wait)
	m.log.Warn("tunnel: down", "udid", l.entry.UDID, "pmd3_key", l.entry.Key, "reason", kind, "err", err, "retry_in", wait.Round(time.Millisecond))
	m.changed()
	m.consider(d)
}

// teardown takes the device's tunnel out of the table now and has its
// watcher close it.
func (m *manager) teardown(d *device, reason string) {
	l := d.live
	d.live = nil
	m.unlist(l)
	l.close()
	m.log.Info("tunnel: closing", "udid", l.entry.UDID, "pmd3_key", l.entry.Key, "reason", reason)
	m.changed()
}

func (m *manager) unlist(l *live) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i := slices.Index(m.table, l); i >= 0 {
		m.table = slices.Delete(m.table, i, i+1)
		p := pathOf(l.entry.Path)
		if m.byPath[p]--; m.byPath[p] <= 0 {
			delete(m.byPath, p)
		}
	}
}

func (m *manager) cancelUDID(udid string) int {
	n := 0
	hold := time.Now().Add(m.cfg.CancelHold)
	for _, d := range m.devices {
		if d.live != nil && d.live.entry.UDID == udid {
			m.teardown(d, "canceled")
			d.holdUntil = hold
			n++
		}
	}
	return n
}

func (m *manager) clear() {
	hold := time.Now().Add(m.cfg.CancelHold)
	for _, d := range m.devices {
		if d.attempt != nil {
			m.abandon(d)
		}
		if d.live != nil {
			m.teardown(d, "cleared")
		}
		d.holdUntil = hold
	}
}

func (m *manager) start(req startRequest, reply chan<- startResult) {
	id := discovery.NormalizeUDID(req.UDID)
	d := m.devices[id]
	if d != nil && d.live != nil {
		reply <- startResult{entry: d.live.entry}
		return
	}
	var paths []discovery.Event
	for _, dev := range m.tracker.Devices() {
		if discovery.NormalizeUDID(dev.UDID) == id {
			paths = dev.Paths
			break
		}
	}
	if req.UDID == "" || len(paths) == 0 {
		reply <- startResult{err: errUnknownDevice}
		return
	}
	i := slices.IndexFunc(paths, func(ev discovery.Event) bool { return req.Match == nil || req.Match(ev) })
	if i < 0 {
		reply <- startResult{err: errNoPath}
		return
	}
	if d != nil && d.attempt == nil {
		// A client asking is no reason to raise the Trust dialog the user
		// just refused, nor to repeat what cannot work: say why instead.
		if d.held != nil && time.Now().Before(d.retryAt) {
			reply <- startResult{err: &heldError{UDID: d.udid, Until: d.retryAt, Err: d.held}}
			return
		}
		if j := slices.IndexFunc(paths, func(ev discovery.Event) bool {
			return (req.Match == nil || req.Match(ev)) && d.dead[ev.Key()] == nil
		}); j >= 0 {
			i = j
		} else {
			reply <- startResult{err: &heldError{UDID: d.udid, Err: d.dead[paths[i].Key()]}}
			return
		}
	}
	if d == nil {
		d = m.newDevice(id, paths[i].UDID)
	}
	d.waiters = append(d.waiters, reply)
	if d.attempt == nil {
		m.startAttempt(d, paths[i])
	}
}

func (m *manager) reply(d *device, r startResult) {
	for _, w := range d.waiters {
		w <- r // buffered, one reply per waiter
	}
	d.waiters = nil
}

func (m *manager) countError(kind string) {
	m.mu.Lock()
	m.errors[kind]++
	m.mu.Unlock()
}

func (m *manager) changed() {
	if m.cfg.OnChange != nil {
		m.cfg.OnChange()
	}
}

// shutdown abandons every attempt and has every tunnel closed; Close
// waits for the goroutines.
func (m *manager) shutdown() {
	for _, d := range m.devices {
		if d.attempt != nil {
			m.abandon(d)
		}
		if d.live != nil {
			l := d.live
			d.live = nil
			m.unlist(l)
			l.close()
			m.log.Info("tunnel: closing", "udid", l.entry.UDID, "pmd3_key", l.entry.Key, "reason", "shutdown")
		}
		m.settle(d)
	}
	m.changed()
}
