package discovery

import (
	"slices"
	"sync"
)

// Tracker folds events from every monitor into one entry per device
// (discovery.md §7): sightings are grouped by normalised UDID, so a device
// seen over usbmux (perhaps with an undashed serial), USB-NCM and Wi-Fi at
// once is one device with three paths, the best of which Best returns.
// Events without a UDID cannot be grouped and are ignored. It is safe for
// concurrent use.
type Tracker struct {
	mu      sync.Mutex
	devices map[string]*tracked // by NormalizeUDID
	order   []string            // first-seen order of devices
}

type tracked struct {
	udid  string           // as first reported
	paths map[string]Event // by Event.Key
}

// TrackedDevice is one tracked device and its paths, best first.
type TrackedDevice struct {
	UDID  string
	Paths []Event
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker { return &Tracker{devices: map[string]*tracked{}} }

// Apply records ev. It reports whether the device's best path changed
// (including appearing or disappearing), which is when a tunnel manager has
// something to reconsider.
func (t *Tracker) Apply(ev Event) (changed bool) {
	if ev.UDID == "" {
		return false
	}
	id := NormalizeUDID(ev.UDID)
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.devices[id]
	var before Event
	var had bool
	if d != nil {
		before, had = best(d)
	}
	switch ev.Kind {
	case Attached:
		if d == nil {
			d = &tracked{udid: ev.UDID, paths: map[string]Event{}}
			t.devices[id] = d
			t.order = append(t.order, id)
		}
		d.paths[ev.Key()] = ev
	case Detached:
		if d == nil {
			return false
		}
		delete(d.paths, ev.Key())
		if len(d.paths) == 0 {
			delete(t.devices, id)
			t.order = slices.DeleteFunc(t.order, func(s string) bool { return s == id })
			return had
		}
	default:
		return false
	}
	after, _ := best(d)
	return !had || after.Key() != before.Key()
}

func best(d *tracked) (Event, bool) {
	var b Event
	found := false
	for _, e := range d.paths {
		if !found || e.rank() < b.rank() || (e.rank() == b.rank() && e.Key() < b.Key()) {
			b, found = e, true
		}
	}
	return b, found
}

// Best returns the preferred path to the device with this UDID (any form).
func (t *Tracker) Best(udid string) (Event, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.devices[NormalizeUDID(udid)]
	if d == nil {
		return Event{}, false
	}
	return best(d)
}

// Devices lists the tracked devices in first-seen order.
func (t *Tracker) Devices() []TrackedDevice {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TrackedDevice, 0, len(t.order))
	for _, id := range t.order {
		d := t.devices[id]
		out = append(out, TrackedDevice{UDID: d.udid, Paths: sortedPaths(d)})
	}
	return out
}

// Paths returns the paths to the device with this UDID (any form), best
// first; nil when it is not tracked.
func (t *Tracker) Paths(udid string) []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.devices[NormalizeUDID(udid)]
	if d == nil {
		return nil
	}
	return sortedPaths(d)
}

func sortedPaths(d *tracked) []Event {
	paths := make([]Event, 0, len(d.paths))
	for _, e := range d.paths {
		paths = append(paths, e)
	}
	slices.SortFunc(paths, func(a, b Event) int {
		if a.rank() != b.rank() {
			return a.rank() - b.rank()
		}
		if a.Key() < b.Key() {
			return -1
		}
		return 1
	})
	return paths
}
