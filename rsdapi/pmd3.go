package rsdapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
)

// The pymobiledevice3 tunneld API (tunneld-api.md §1; pymobiledevice3
// tunneld/server.py, TunneldRunner). Handlers there build a dict and send
// json.dumps(data) (styleDumps); GET /, GET /upstream and FastAPI's own
// errors go through JSONResponse (styleCompact). /start-tunnel's 501 and
// 404, which pymobiledevice3 sends without a Content-Type, carry
// application/json and nosniff here.

// pmd3Route is one path of the FastAPI app with its methods, in
// registration order (Starlette answers 405 with the Allow list of the first
// route whose path matched).
type pmd3Route struct {
	path  string
	allow string // Allow header on 405; GET routes also take HEAD
}

var pmd3Routes = []pmd3Route{
	{"/", "GET, HEAD"},
	{"/upstream", "GET, HEAD"}, // POST and DELETE handled too; the GET route is registered first
	{"/shutdown", "GET, HEAD"},
	{"/clear_tunnels", "GET, HEAD"},
	{"/cancel", "GET, HEAD"},
	{"/hello", "GET, HEAD"},
	{"/start-tunnel", "GET, HEAD"},
	{"/metrics", "GET, HEAD"}, // iosmux addition
}

// PMD3Handler serves the pymobiledevice3 tunneld API (default port 49151),
// plus GET /metrics when Config.Metrics is set.
func (s *Server) PMD3Handler() http.Handler {
	return s.wrap("pmd3", pmd3Detail, s.servePMD3)
}

func (s *Server) servePMD3(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case path == "/" && get:
		s.pmd3List(w, r)
	case path == "/hello" && get:
		writePy(w, http.StatusOK, object{{"message", "Hello, I'm alive"}})
	case path == "/start-tunnel" && get:
		s.pmd3Start(w, r)
	case path == "/cancel" && get:
		s.audit("pmd3", r)
		s.pmd3Cancel(w, r)
	case path == "/clear_tunnels" && get:
		s.audit("pmd3", r)
		s.reg.Clear()
		writePy(w, http.StatusOK, object{{"operation", "clear_tunnels"}, {"data", true}, {"message", "Cleared tunnels..."}})
	case path == "/shutdown" && get:
		s.audit("pmd3", r)
		s.reg.Shutdown()
		writePy(w, http.StatusOK, object{{"operation", "shutdown"}, {"data", true}, {"message", "Server shutting down..."}})
	case path == "/upstream" && get:
		writeCompact(w, http.StatusOK, s.upstream.sorted())
	case path == "/upstream" && (r.Method == http.MethodPost || r.Method == http.MethodDelete):
		s.pmd3Upstream(w, r)
	case path == "/metrics" && get && s.metrics != nil:
		s.metrics.ServeHTTP(w, r)
	default:
		s.pmd3NoRoute(w, r)
	}
}

// pmd3NoRoute reproduces Starlette's router: a known path with another
// method → 405 with Allow; a path with trailing slashes whose stripped form
// is a route → 307 to it; anything else → 404.
func (s *Server) pmd3NoRoute(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	for _, rt := range pmd3Routes {
		if rt.path == path && (rt.path != "/metrics" || s.metrics != nil) {
			w.Header().Set("Allow", rt.allow)
			pmd3Detail(w, http.StatusMethodNotAllowed, "Method Not Allowed")
			return
		}
	}
	if path != "/" && strings.HasSuffix(path, "/") {
		stripped := strings.TrimRight(path, "/")
		for _, rt := range pmd3Routes {
			if rt.path == stripped && (rt.path != "/metrics" || s.metrics != nil) {
				loc := "http://" + r.Host + stripped
				if r.URL.RawQuery != "" {
					loc += "?" + r.URL.RawQuery
				}
				w.Header().Set("Location", pyQuote(loc))
				w.Header().Set("Content-Length", "0")
				w.WriteHeader(http.StatusTemporaryRedirect)
				return
			}
		}
	}
	pmd3Detail(w, http.StatusNotFound, "Not Found")
}

// pmd3List is GET /: UDID → [{tunnel-address, tunnel-port, interface}], local
// tunnels in table order, then upstream entries merged by UDID.
func (s *Server) pmd3List(w http.ResponseWriter, r *http.Request) {
	var listing object
	for _, t := range s.reg.Tunnels() {
		if t.UDID == "" {
			continue // still being identified: invisible, as in pymobiledevice3
		}
		entry := object{{"tunnel-address", t.ListedAddress()}, {"tunnel-port", int64(t.RSDPort)}, {"interface", t.Key}}
		appendEntries(&listing, t.UDID, []value{entry})
	}
	ups := s.upstream.fetchAll(r.Context(), hopsOf(r), func(url string, err error) {
		s.log.Debug("upstream tunneld unreachable", "url", url, "err", err)
	})
	for _, up := range ups {
		for _, m := range up {
			entries, _ := m.val.([]value)
			appendEntries(&listing, m.key, entries)
		}
	}
	if listing == nil {
		listing = object{}
	}
	writeCompact(w, http.StatusOK, listing)
}

func appendEntries(listing *object, udid string, entries []value) {
	for i := range *listing {
		if (*listing)[i].key == udid {
			(*listing)[i].val = append((*listing)[i].val.([]value), entries...)
			return
		}
	}
	*listing = append(*listing, member{udid, append([]value{}, entries...)})
}

// pmd3Start is GET /start-tunnel (tunneld-api.md §1.3).
func (s *Server) pmd3Start(w http.ResponseWriter, r *http.Request) {
	q, ok := pmd3Query(w, r)
	if !ok {
		return
	}
	udid, ok := q.require(w, "udid")
	if !ok {
		return
	}
	// Step 1: an established tunnel with exactly this UDID, whatever ip and
	// connection_type say.
	for _, t := range s.reg.Tunnels() {
		if t.UDID == udid {
			writePy(w, http.StatusOK, startReply(t))
			return
		}
	}
	ctype, hasType := q.get("connection_type")
	switch {
	case !hasType:
		ctype = ""
	case ctype == "usbmux" || ctype == "usb" || ctype == "wifi":
	default:
		// No branch matches: nothing is attempted.
		writeJSONError(w, http.StatusNotImplemented, object{{"error", "task not created"}})
		return
	}
	ip, _ := q.get("ip")
	t, err := s.reg.StartTunnel(r.Context(), StartRequest{UDID: udid, IP: ip, Connection: ctype})
	switch {
	case err == nil:
		writePy(w, http.StatusOK, startReply(t))
	case errors.Is(err, ErrNoTask):
		writeJSONError(w, http.StatusNotImplemented, object{{"error", "task not created"}})
	case errors.Is(err, ErrTunnelFailed):
		writeJSONError(w, http.StatusNotFound, object{{"error", "something went wrong during tunnel creation"}})
	default:
		body := object{{"error", object{{"exception", exceptionName(err)}, {"traceback", err.Error()}}}}
		writeJSONError(w, http.StatusNotImplemented, body)
	}
}

func startReply(t Tunnel) object {
	return object{{"interface", t.Interface}, {"port", int64(t.RSDPort)}, {"address", t.ListedAddress()}}
}

// exceptionName names err for a 501 reply: the error's own choice, then
// pymobiledevice3's names for the conditions it has, then the Go type of the
// innermost error.
func exceptionName(err error) string {
	var n ExceptionNamer
	if errors.As(err, &n) {
		return n.ExceptionName()
	}
	if errors.Is(err, ErrDeviceNotFound) {
		return "DeviceNotFoundError"
	}
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	t := reflect.TypeOf(err)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() == "" || t.Name() == "errorString" {
		return "Error"
	}
	return t.Name()
}

func (s *Server) pmd3Cancel(w http.ResponseWriter, r *http.Request) {
	q, ok := pmd3Query(w, r)
	if !ok {
		return
	}
	udid, ok := q.require(w, "udid")
	if !ok {
		return
	}
	s.reg.Cancel(udid)
	writePy(w, http.StatusOK, object{
		{"operation", "cancel"}, {"udid", udid}, {"data", true},
		{"message", "tunnel " + udid + " Canceled ..."},
	})
}

// pmd3Upstream is POST and DELETE /upstream with body {"url": "<string>"}.
func (s *Server) pmd3Upstream(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			pmd3Detail(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		pmd3Detail(w, http.StatusBadRequest, "cannot read request body")
		return
	}
	u, verr := upstreamBody(r.Header.Get("Content-Type"), raw)
	if verr != nil {
		writeCompact(w, http.StatusUnprocessableEntity, object{{"detail", []value{verr}}})
		return
	}
	if r.Method == http.MethodPost {
		if err := s.upstream.add(u); err != nil {
			pmd3Detail(w, http.StatusBadRequest, "too many upstreams")
			return
		}
		writePy(w, http.StatusOK, object{{"operation", "add_upstream"}, {"url", u}, {"data", true}, {"message", "upstream " + u + " added"}})
		return
	}
	s.upstream.remove(u)
	writePy(w, http.StatusOK, object{{"operation", "remove_upstream"}, {"url", u}, {"data", true}, {"message", "upstream " + u + " removed"}})
}

// upstreamBody validates a _UpstreamBody the way FastAPI + pydantic v2 do
// and returns the url or one validation error object. The messages follow
// pydantic 2; "JSON decode error" carries Go's parser message rather than
// Python's (UNCONFIRMED wording, clients only look at the status).
func upstreamBody(contentType string, raw []byte) (string, object) {
	if len(raw) == 0 {
		return "", object{{"type", "missing"}, {"loc", []value{"body"}}, {"msg", "Field required"}, {"input", nil}}
	}
	var body value
	if isJSONContentType(contentType) {
		v, err := decodeJSON(raw)
		if err != nil {
			// Python reports the 0-based index of the offending character;
			// Go the count of bytes read including it.
			pos := int64(len(raw))
			var syn *json.SyntaxError
			if errors.As(err, &syn) && syn.Offset > 0 {
				pos = syn.Offset - 1
			}
			return "", object{{"type", "json_invalid"}, {"loc", []value{"body", pos}}, {"msg", "JSON decode error"}, {"input", object{}}, {"ctx", object{{"error", jsonErrorText(err)}}}}
		}
		body = v
	} else {
		// FastAPI hands non-JSON bodies to pydantic as bytes.
		body = string(raw)
	}
	o, ok := body.(object)
	if !ok {
		return "", object{{"type", "model_attributes_type"}, {"loc", []value{"body"}}, {"msg", "Input should be a valid dictionary or object to extract fields from"}, {"input", body}}
	}
	v, ok := o.get("url")
	if !ok {
		return "", object{{"type", "missing"}, {"loc", []value{"body", "url"}}, {"msg", "Field required"}, {"input", o}}
	}
	u, ok := v.(string)
	if !ok {
		return "", object{{"type", "string_type"}, {"loc", []value{"body", "url"}}, {"msg", "Input should be a valid string"}, {"input", v}}
	}
	return u, nil
}

func jsonErrorText(err error) string {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "Expecting value"
	}
	return strings.TrimPrefix(err.Error(), "rsdapi: ")
}

// isJSONContentType is FastAPI's test: no Content-Type, or application/json
// or application/*+json.
func isJSONContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	sub, ok := strings.CutPrefix(mt, "application/")
	return ok && (sub == "json" || strings.HasSuffix(sub, "+json"))
}

// pmd3Detail writes FastAPI's HTTPException shape: {"detail":"…"}.
func pmd3Detail(w http.ResponseWriter, code int, msg string) {
	writeCompact(w, code, object{{"detail", msg}})
}

// writePy writes a handler reply: json.dumps(data) with media_type
// application/json.
func writePy(w http.ResponseWriter, code int, v value) {
	w.Header().Set("Content-Type", "application/json")
	writeRaw(w, code, encodeJSON(v, styleDumps))
}

// writeCompact writes a JSONResponse (FastAPI return values and errors).
func writeCompact(w http.ResponseWriter, code int, v value) {
	w.Header().Set("Content-Type", "application/json")
	writeRaw(w, code, encodeJSON(v, styleCompact))
}

// writeJSONError writes /start-tunnel's error replies: json.dumps(data) as
// pymobiledevice3 sends them, but typed, so that neither a browser nor a
// client sniffs the text (pymobiledevice3 sends them without a
// Content-Type; no client reads one).
func writeJSONError(w http.ResponseWriter, code int, v value) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	writeRaw(w, code, encodeJSON(v, styleDumps))
}

// writeRaw writes body as is. Without a Content-Type set by the caller,
// none is sent (fastapi.Response without media_type); Go would otherwise
// sniff one.
func writeRaw(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil
	}
	h.Set("Content-Length", itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}
