package rsdapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The appium-ios-remotexpc tunnel registry API (tunneld-api.md §3;
// src/lib/tunnel/tunnel-registry-server.ts). Every reply is the payload with
// a leading "status" key holding Node's reason phrase; JSON is
// JSON.stringify's (styleCompact). Paths match as path-to-regexp v8 does:
// case-insensitively, with an optional trailing slash.

const appiumBase = "/remotexpc/tunnels"

// maxAppiumStored bounds entries written with PUT.
const maxAppiumStored = 256

// maxWaitMs is MAX_TUNNEL_REGISTRY_WAIT_MS.
const maxWaitMs = 60000

// AppiumHandler serves the appium tunnel registry API (default port 42314).
// Entries are keyed by usbmuxd serial number (UDID when unknown); devices
// not on usbmuxd are listed with deviceId 0.
func (s *Server) AppiumHandler() http.Handler {
	return s.wrap("appium", appiumError, s.serveAppium)
}

// nodeStatus is Node's http.STATUS_CODES for the codes we send (Go's
// http.StatusText differs for 413).
func nodeStatus(code int) string {
	switch code {
	case http.StatusRequestEntityTooLarge:
		return "Payload Too Large"
	default:
		return http.StatusText(code)
	}
}

// sendAppium is sendJSON: {"status": <phrase>, ...data}; a "status" key in
// data overrides the value but keeps the first position.
func sendAppium(w http.ResponseWriter, code int, data object) {
	out := object{{"status", nodeStatus(code)}}
	for _, m := range data {
		out.set(m.key, m.val)
	}
	w.Header().Set("Content-Type", "application/json")
	writeRaw(w, code, encodeJSON(out, styleCompact))
}

func appiumError(w http.ResponseWriter, code int, msg string) {
	sendAppium(w, code, object{{"error", msg}})
}

// appiumStore holds entries written by PUT (appium's server keeps them in
// its registry; tunnel-creation scripts are the writers). Entries of live
// tunnels from the Registry take precedence over stored ones.
type appiumStore struct {
	mu      sync.Mutex
	entries object // udid → object, in write order
}

func newAppiumStore() *appiumStore { return &appiumStore{} }

func (st *appiumStore) put(udid string, e object) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.entries.get(udid); !ok && len(st.entries) >= maxAppiumStored {
		return false
	}
	st.entries.set(udid, e)
	return true
}

func (st *appiumStore) snapshot() object {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append(object(nil), st.entries...)
}

func (s *Server) serveAppium(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	rest, ok := cutPrefixFold(path, appiumBase)
	if !ok || (rest != "" && rest[0] != '/') {
		appiumError(w, http.StatusNotFound, "Not found")
		return
	}
	segs := []string{}
	if rest != "" {
		segs = strings.Split(rest[1:], "/")
	}
	for _, seg := range segs {
		if seg == "" {
			appiumError(w, http.StatusNotFound, "Not found")
			return
		}
	}
	switch {
	case r.Method == http.MethodGet && len(segs) == 0:
		s.appiumList(w)
	case r.Method == http.MethodGet && len(segs) == 1 && strings.EqualFold(segs[0], "metadata"):
		sendAppium(w, http.StatusOK, s.appiumMetadata(len(s.appiumEntries())))
	case r.Method == http.MethodGet && len(segs) == 2 && strings.EqualFold(segs[0], "device"):
		s.appiumByDevice(w, segs[1])
	case r.Method == http.MethodPost && len(segs) == 2 && strings.EqualFold(segs[1], "refresh-services") && segs[0] != "metadata":
		s.appiumRefresh(w, r, segs[0])
	case r.Method == http.MethodGet && len(segs) == 1 && segs[0] != "metadata":
		s.appiumGet(w, r, segs[0])
	case r.Method == http.MethodPut && len(segs) == 1 && segs[0] != "metadata":
		s.appiumPut(w, r, segs[0])
	default:
		// Includes DELETE, which appium's client issues and its server
		// never routes.
		appiumError(w, http.StatusNotFound, "Not found")
	}
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// appiumEntries is the registry as appium lists it: udid → entry.
func (s *Server) appiumEntries() object {
	var out object
	seen := map[string]bool{}
	for _, t := range onePerDevice(s.reg.Tunnels()) {
		seen[normUDID(t.serial())] = true
		out = append(out, member{t.serial(), s.appiumEntry(t)})
	}
	for _, m := range s.appium.snapshot() {
		if !seen[normUDID(m.key)] {
			out = append(out, m)
		}
	}
	return out
}

func millis(t time.Time) int64 { return t.UnixMilli() }

// isoTime is JavaScript's Date.prototype.toISOString.
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// appiumEntry is a TunnelRegistryEntry (tunneld-api.md §3.2) in appium's key
// order.
func (s *Server) appiumEntry(t Tunnel) object {
	services := object{}
	for _, sv := range t.Services {
		services.set(sv.Name, object{{"port", strconv.Itoa(int(sv.Port))}})
	}
	created := t.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	updated := t.UpdatedAt
	if updated.IsZero() {
		updated = created
	}
	e := object{
		{"udid", t.serial()}, {"deviceId", int64(t.DeviceID)},
		{"address", t.ListedAddress()}, {"rsdPort", int64(t.RSDPort)},
		{"services", services},
	}
	if !t.CatalogAt.IsZero() {
		e = append(e, member{"catalogUpdatedAt", millis(t.CatalogAt)})
	}
	return append(e,
		member{"connectionType", connectionType(t)}, member{"productId", int64(t.ProductID)},
		member{"createdAt", millis(created)}, member{"lastUpdated", millis(updated)},
	)
}

func connectionType(t Tunnel) string {
	if t.ConnectionType != "" {
		return t.ConnectionType
	}
	switch t.Path {
	case PathUsbmuxUSB, PathUSBNCM:
		return "USB"
	default:
		return "Network"
	}
}

func (s *Server) appiumMetadata(n int) object {
	return object{{"lastUpdated", isoTime(s.now())}, {"totalTunnels", int64(n)}, {"activeTunnels", int64(n)}}
}

func (s *Server) appiumList(w http.ResponseWriter) {
	entries := s.appiumEntries()
	if entries == nil {
		entries = object{}
	}
	sendAppium(w, http.StatusOK, object{{"tunnels", entries}, {"metadata", s.appiumMetadata(len(entries))}})
}

func (s *Server) appiumByDevice(w http.ResponseWriter, raw string) {
	id, ok := jsParseInt(raw)
	if !ok {
		appiumError(w, http.StatusBadRequest, "Invalid device ID")
		return
	}
	for _, m := range s.appiumEntries() {
		e, _ := m.val.(object)
		if v, ok := e.get("deviceId"); ok && numberEquals(v, id) {
			sendAppium(w, http.StatusOK, e)
			return
		}
	}
	appiumError(w, http.StatusNotFound, "Tunnel not found for device ID: "+id)
}

// jsParseInt is parseInt(s, 10) for the cases that matter: leading
// whitespace, an optional sign, then digits up to the first non-digit. It
// returns the integer's decimal text (no leading zeros) or false for NaN.
func jsParseInt(s string) (string, bool) {
	s = strings.TrimLeft(s, " \t\n\r\f\v")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	if n == 0 {
		return "", false
	}
	d := strings.TrimLeft(s[:n], "0")
	if d == "" {
		return "0", true
	}
	if neg {
		d = "-" + d
	}
	return d, true
}

func numberEquals(v value, dec string) bool {
	switch v := v.(type) {
	case int64:
		return strconv.FormatInt(v, 10) == dec
	case jsonNumber:
		f1, err1 := strconv.ParseFloat(string(v), 64)
		f2, err2 := strconv.ParseFloat(dec, 64)
		return err1 == nil && err2 == nil && f1 == f2
	}
	return false
}

// entryReady is isTunnelEntryReady: a non-empty services object.
func entryReady(e object) bool {
	v, _ := e.get("services")
	o, ok := v.(object)
	return ok && len(o) > 0
}

func (s *Server) appiumFind(udid string) (object, bool) {
	want := normUDID(udid)
	for _, m := range s.appiumEntries() {
		if normUDID(m.key) == want {
			e, _ := m.val.(object)
			return e, true
		}
	}
	return nil, false
}

// waitMs parses ?waitMs= as appium does (first value; absent or empty = 0;
// leading integer; 0…60000).
func waitMs(r *http.Request) (int, bool) {
	raw, present := firstQueryValue(r.URL.RawQuery, "waitMs")
	if !present || raw == "" {
		return 0, true
	}
	d, ok := jsParseInt(raw)
	if !ok || strings.HasPrefix(d, "-") || len(d) > 6 {
		return 0, false
	}
	n, _ := strconv.Atoi(d)
	if n > maxWaitMs {
		return 0, false
	}
	return n, true
}

// firstQueryValue is URLSearchParams.get: first match, lenient decoding.
func firstQueryValue(raw, key string) (string, bool) {
	for _, p := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(p, "=")
		if lenientUnescape(k) == key {
			return lenientUnescape(v), true
		}
	}
	return "", false
}

// lenientUnescape decodes like the WHATWG form decoder: '+' is a space and a
// malformed escape stays literal.
func lenientUnescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' {
			b = append(b, ' ')
			continue
		}
		if c == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b = append(b, byte(n))
				i += 2
				continue
			}
		}
		b = append(b, c)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func (s *Server) appiumGet(w http.ResponseWriter, r *http.Request, udid string) {
	wait, ok := waitMs(r)
	if !ok {
		appiumError(w, http.StatusBadRequest, "Invalid waitMs query parameter")
		return
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(time.Duration(wait) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	for {
		// Take the change channel before looking, so a change between the
		// look and the wait is not missed.
		changed := s.changes()
		if e, ok := s.appiumFind(udid); ok && entryReady(e) {
			sendAppium(w, http.StatusOK, e)
			return
		}
		if wait == 0 {
			appiumError(w, http.StatusNotFound, "Tunnel not found for UDID: "+udid)
			return
		}
		select {
		case <-changed:
		case <-timeout:
			sendAppium(w, http.StatusRequestTimeout, object{{"status", "NOT_READY"}})
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) appiumRefresh(w http.ResponseWriter, r *http.Request, udid string) {
	t, live := findSerial(s.reg.Tunnels(), udid)
	if !live {
		if _, stored := s.appiumFind(udid); !stored {
			appiumError(w, http.StatusNotFound, "Tunnel not found for UDID: "+udid)
			return
		}
	}
	rf, ok := s.reg.(ServiceRefresher)
	if !ok || !live {
		// Entries written with PUT have no tunnel behind them to ask.
		appiumError(w, http.StatusServiceUnavailable, "Service catalog refresh is not configured")
		return
	}
	t, err := rf.RefreshServices(r.Context(), t.UDID)
	if err != nil {
		appiumError(w, http.StatusInternalServerError, "Failed to refresh service catalog")
		return
	}
	s.Notify()
	sendAppium(w, http.StatusOK, s.appiumEntry(t))
}

func (s *Server) appiumPut(w http.ResponseWriter, r *http.Request, udid string) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			appiumError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		appiumError(w, http.StatusBadRequest, "Malformed JSON in request body")
		return
	}
	var body value = object{}
	if len(raw) > 0 {
		if body, err = decodeJSON(raw); err != nil {
			appiumError(w, http.StatusBadRequest, "Malformed JSON in request body")
			return
		}
	}
	var entry object
	switch b := body.(type) {
	case object:
		entry = b
	case []value:
		// An array is a JS object without a udid key.
	default:
		appiumError(w, http.StatusBadRequest, "Invalid tunnel data")
		return
	}
	if v, ok := entry.get("udid"); !ok || v != udid {
		appiumError(w, http.StatusBadRequest, "UDID mismatch between path and body")
		return
	}
	stored := append(object(nil), entry...)
	stored.set("lastUpdated", millis(s.now()))
	if !s.appium.put(udid, stored) {
		appiumError(w, http.StatusBadRequest, "Too many tunnel entries")
		return
	}
	s.Notify()
	sendAppium(w, http.StatusOK, object{{"success", true}, {"tunnel", stored}})
}
