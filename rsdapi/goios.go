package rsdapi

import (
	"net/http"
	"strings"
)

// The go-ios tunnel agent API (tunneld-api.md §2; go-ios ios/tunnel/
// tunnel_api.go tunnelInfoMux). Success bodies are exactly what go-ios's
// json.Encoder writes (compact, trailing newline). Errors differ on purpose:
// go-ios sends plain text, we send {"error":"…"} with the same status codes;
// go-ios's clients look only at the status.

// GoIOSHandler serves the go-ios agent API (default port 60105). UDIDs in
// paths match usbmuxd serial numbers with or without dashes, any case.
func (s *Server) GoIOSHandler() http.Handler {
	return s.wrap("goios", goiosError, s.serveGoIOS)
}

func goiosError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	writeRaw(w, code, append(encodeJSON(object{{"error", msg}}, styleCompact), '\n'))
}

func (s *Server) serveGoIOS(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case path == "/health":
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(http.StatusOK)
	case path == "/ready":
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if rd, ok := s.reg.(Readier); ok && !rd.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	case path == "/shutdown":
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		s.audit("goios", r)
		s.reg.Shutdown()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		writeRaw(w, http.StatusOK, []byte("shutting down in 1 second..."))
	case path == "/tunnels":
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		list := []value{}
		for _, t := range onePerDevice(s.reg.Tunnels()) {
			list = append(list, goiosTunnel(t))
		}
		writeGoJSON(w, list)
	case path == "/tunnel":
		// ServeMux redirects a subtree root without its slash.
		http.Redirect(w, r, "/tunnel/", http.StatusMovedPermanently)
	case strings.HasPrefix(path, "/tunnel/"):
		s.goiosTunnel(w, r, strings.TrimPrefix(path, "/tunnel/"))
	default:
		goiosError(w, http.StatusNotFound, "page not found")
	}
}

func (s *Server) goiosTunnel(w http.ResponseWriter, r *http.Request, udid string) {
	if udid == "" {
		goiosError(w, http.StatusBadRequest, "missing udid")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	t, ok := findSerial(s.reg.Tunnels(), udid)
	if !ok {
		goiosError(w, http.StatusNotFound, "tunnel not found")
		return
	}
	if r.Method == http.MethodGet {
		writeGoJSON(w, goiosTunnel(t))
		return
	}
	s.audit("goios", r)
	s.reg.Cancel(t.UDID)
	s.Notify()
	w.WriteHeader(http.StatusNoContent)
}

// goiosTunnel is go-ios's tunnel.Tunnel in its field order.
func goiosTunnel(t Tunnel) object {
	port := int64(0)
	if t.Userspace {
		port = int64(t.UserspacePort)
	}
	return object{
		{"address", t.Address}, {"rsdPort", int64(t.RSDPort)}, {"udid", t.serial()},
		{"userspaceTun", t.Userspace}, {"userspaceTunPort", port},
	}
}

func writeGoJSON(w http.ResponseWriter, v value) {
	w.Header().Set("Content-Type", "application/json")
	writeRaw(w, http.StatusOK, append(encodeJSON(v, styleCompact), '\n'))
}

// normUDID is the identity form of a UDID (discovery.md §7.2):
// upper case, dashes removed, so a Linux usbmuxd's undashed serial matches
// the dashed UniqueDeviceID.
func normUDID(udid string) string {
	return strings.ToUpper(strings.ReplaceAll(udid, "-", ""))
}

// onePerDevice keeps the first tunnel of every device (go-ios and appium hold
// one per UDID; pymobiledevice3 lists all).
func onePerDevice(ts []Tunnel) []Tunnel {
	seen := make(map[string]bool, len(ts))
	out := ts[:0:0]
	for _, t := range ts {
		if t.UDID == "" && t.SerialNumber == "" {
			continue
		}
		k := normUDID(t.serial())
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, t)
	}
	return out
}

// findSerial finds the first tunnel whose serial (or, failing that, UDID)
// matches udid in normalised form.
func findSerial(ts []Tunnel, udid string) (Tunnel, bool) {
	want := normUDID(udid)
	for _, t := range ts {
		if normUDID(t.serial()) == want || normUDID(t.UDID) == want {
			return t, true
		}
	}
	return Tunnel{}, false
}
