package usbmux

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// BUID answers ReadBUID; empty means a random UUID.
	BUID string
	// Timeout bounds a request's payload once its header has arrived and
	// every write; 0 means DefaultTimeout.
	Timeout time.Duration
	// Logger receives per-connection debug lines; nil discards.
	Logger *slog.Logger
}

// Server plays usbmuxd for a set of served devices (usbmux.md §5): the simulator
// and the interop tests put it on a UNIX socket and point clients at it
// with USBMUXD_SOCKET_ADDRESS. It speaks the plist protocol only and keeps
// pair records in memory.
//
// Each accepted connection gets one goroutine, owned by the Server and
// waited for by Close. A Connect hands that goroutine to the device's
// PortHandler.
type Server struct {
	buid    string
	timeout time.Duration
	log     *slog.Logger

	mu        sync.Mutex
	devices   []served
	nextID    uint32
	records   map[string][]byte
	subs      map[*subscriber]struct{}
	conns     map[net.Conn]struct{}
	listeners map[net.Listener]struct{}
	closed    bool
	wg        sync.WaitGroup
}

type served struct {
	dev   DeviceEntry
	ports PortHandler
}

// NewServer returns a Server with no devices and no pair records.
func NewServer(cfg ServerConfig) *Server {
	s := &Server{
		buid:      cfg.BUID,
		timeout:   cfg.Timeout,
		log:       cfg.Logger,
		nextID:    1,
		records:   map[string][]byte{},
		subs:      map[*subscriber]struct{}{},
		conns:     map[net.Conn]struct{}{},
		listeners: map[net.Listener]struct{}{},
	}
	if s.buid == "" {
		s.buid = randomUUID()
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// BUID returns the value ReadBUID answers.
func (s *Server) BUID() string { return s.buid }

// AddDevice attaches a device and returns its DeviceID. A zero
// d.DeviceID gets the next free one. Listeners receive Attached.
func (s *Server) AddDevice(d DeviceEntry, ports PortHandler) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.DeviceID == 0 {
		for s.hasID(s.nextID) {
			s.nextID++
		}
		d.DeviceID = s.nextID
		s.nextID++
	}
	if d.ConnectionType == "" {
		d.ConnectionType = ConnectionUSB
	}
	s.devices = append(s.devices, served{dev: d, ports: ports})
	s.broadcastLocked(&reply{MessageType: "Attached", DeviceID: d.DeviceID, Properties: &d})
	return d.DeviceID
}

func (s *Server) hasID(id uint32) bool {
	return slices.ContainsFunc(s.devices, func(sd served) bool { return sd.dev.DeviceID == id })
}

// RemoveDevice detaches a device; listeners receive Detached. It reports
// whether the device was attached. Connections already handed to the
// device are not touched: they end when the device's handler ends them.
func (s *Server) RemoveDevice(id uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.devices, func(sd served) bool { return sd.dev.DeviceID == id })
	if i < 0 {
		return false
	}
	s.devices = slices.Delete(s.devices, i, i+1)
	s.broadcastLocked(&reply{MessageType: "Detached", DeviceID: id})
	return true
}

// Devices returns the attached devices in ListDevices order.
func (s *Server) Devices() []DeviceEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]DeviceEntry, len(s.devices))
	for i, sd := range s.devices {
		out[i] = sd.dev
	}
	return out
}

// PairRecord returns the stored record for udid.
func (s *Server) PairRecord(udid string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[udid]
	return slices.Clone(r), ok
}

// SetPairRecord stores a record as SavePairRecord would, without events.
func (s *Server) SetPairRecord(udid string, record []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[udid] = slices.Clone(record)
}

// DropListeners closes every Listen stream, as Linux usbmuxd does to its
// listeners when a device is replugged (pmd3 issue #1742); clients must
// reconnect.
func (s *Server) DropListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		sub.kill()
		delete(s.subs, sub)
	}
}

// Serve accepts connections on l until l fails or Close is called; it
// returns nil after Close. The Server closes l.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return net.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("usbmux: accept: %w", err)
		}
		if !s.track(conn) {
			conn.Close()
			return nil
		}
		go func() {
			defer s.wg.Done()
			s.serveConn(conn)
		}()
	}
}

// ServeConn serves one already-connected client (an in-memory pipe, say)
// until it closes or the Server does; it blocks.
func (s *Server) ServeConn(conn net.Conn) {
	if !s.track(conn) {
		conn.Close()
		return
	}
	defer s.wg.Done()
	s.serveConn(conn)
}

// track registers conn and one wg slot for its goroutine.
func (s *Server) track(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	return true
}

// Close stops every Serve loop, closes every connection (including those
// handed to device handlers) and returns once all of them have finished.
// It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	for sub := range s.subs {
		sub.kill()
		delete(s.subs, sub)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) serveConn(conn net.Conn) {
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
	}()
	log := s.log.With("conn", fmt.Sprintf("%p", conn))
	for {
		h, payload, err := s.readRequest(conn)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug("usbmux server: read request", "err", err)
			}
			return
		}
		if err := checkPlistHeader(h); err != nil {
			// What usbmuxd answers to a protocol it does not speak.
			log.Debug("usbmux server: not a plist request", "err", err)
			if s.send(conn, h.Tag, resultReply(ResultBadVersion)) != nil {
				return
			}
			continue
		}
		var req request
		if err := decodePlist(payload, &req); err != nil || req.MessageType == "" {
			// usbmuxd drops a client whose plist it cannot read.
			log.Debug("usbmux server: bad request plist", "err", err)
			return
		}
		log.Debug("usbmux server: request", "type", req.MessageType, "tag", h.Tag)
		switch req.MessageType {
		case "Listen":
			if s.send(conn, h.Tag, resultReply(ResultOK)) == nil {
				s.listen(conn)
			}
			return
		case "Connect":
			if handedOff, err := s.connect(conn, h.Tag, &req); handedOff || err != nil {
				return
			}
			continue // usbmuxd takes further commands after a failed Connect
		}
		if err := s.send(conn, h.Tag, s.answer(&req)); err != nil {
			return
		}
	}
}

// readRequest reads one request. The wait for a header has no deadline (an
// idle client may keep its socket, as with real usbmuxd; Close ends it);
// the payload must follow within the timeout.
func (s *Server) readRequest(conn net.Conn) (Header, []byte, error) {
	var hb [HeaderLen]byte
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return Header{}, nil, err
	}
	if _, err := io.ReadFull(conn, hb[:]); err != nil {
		return Header{}, nil, err
	}
	h, err := ParseHeader(hb[:], MaxMessageLen)
	if err != nil {
		return Header{}, nil, err
	}
	if err := conn.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
		return Header{}, nil, err
	}
	payload := make([]byte, h.PayloadLen())
	if _, err := io.ReadFull(conn, payload); err != nil {
		return Header{}, nil, err
	}
	return h, payload, conn.SetReadDeadline(time.Time{})
}

func (s *Server) send(conn net.Conn, tag uint32, r any) error {
	if err := conn.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	return writePacket(conn, tag, r)
}

// deviceListReply keeps DeviceList even when empty: usbmuxd sends an empty
// array, and clients (ours included) treat a missing list as malformed.
type deviceListReply struct {
	DeviceList []*reply `plist:"DeviceList"`
}

// answer handles the request/reply commands.
func (s *Server) answer(req *request) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.MessageType {
	case "ListDevices":
		list := make([]*reply, 0, len(s.devices))
		for _, sd := range s.devices {
			d := sd.dev
			list = append(list, &reply{MessageType: "Attached", DeviceID: d.DeviceID, Properties: &d})
		}
		return deviceListReply{DeviceList: list}
	case "ReadBUID":
		return &reply{BUID: s.buid}
	case "ReadPairRecord":
		if req.PairRecordID == "" {
			return resultReply(ResultInvalid)
		}
		rec, ok := s.lookupRecordLocked(req.PairRecordID)
		if !ok {
			return resultReply(ResultBadDevice) // ENOENT, as usbmuxd
		}
		return &reply{PairRecordData: slices.Clone(rec)}
	case "SavePairRecord":
		if req.PairRecordID == "" || len(req.PairRecordData) == 0 {
			return resultReply(ResultInvalid)
		}
		s.records[req.PairRecordID] = slices.Clone(req.PairRecordData)
		// usbmuxd announces Paired when the record names an attached device.
		if req.DeviceID != 0 && slices.ContainsFunc(s.devices, func(sd served) bool {
			return sd.dev.DeviceID == req.DeviceID && SameUDID(sd.dev.SerialNumber, req.PairRecordID)
		}) {
			s.broadcastLocked(&reply{MessageType: "Paired", DeviceID: req.DeviceID})
		}
		return resultReply(ResultOK)
	case "DeletePairRecord":
		if req.PairRecordID == "" {
			return resultReply(ResultInvalid)
		}
		if _, ok := s.records[req.PairRecordID]; !ok {
			return resultReply(ResultBadDevice)
		}
		delete(s.records, req.PairRecordID)
		return resultReply(ResultOK)
	}
	return resultReply(ResultBadCommand)
}

// lookupRecordLocked finds a pair record by exact ID, else by the same UDID
// written differently. Real usbmuxd matches file names exactly, but clients
// disagree on the dash (go-ios asks with the serial usbmuxd lists, which
// Linux strips; libimobiledevice saves under the dashed UDID), and a
// simulator should not reproduce that mismatch. s.mu is held.
func (s *Server) lookupRecordLocked(id string) ([]byte, bool) {
	if rec, ok := s.records[id]; ok {
		return rec, true
	}
	for k, rec := range s.records {
		if SameUDID(k, id) {
			return rec, true
		}
	}
	return nil, false
}

// connect answers a Connect and, on success, hands conn to the device; it
// reports whether it did.
func (s *Server) connect(conn net.Conn, tag uint32, req *request) (handedOff bool, err error) {
	s.mu.Lock()
	var ports PortHandler
	for _, sd := range s.devices {
		if sd.dev.DeviceID == req.DeviceID {
			ports = sd.ports
		}
	}
	s.mu.Unlock()
	switch {
	case ports == nil:
		return false, s.send(conn, tag, resultReply(ResultBadDevice))
	case req.PortNumber == 0:
		return false, s.send(conn, tag, resultReply(ResultBadCommand))
	}
	serve, ok := ports.OpenPort(SwapPort(req.PortNumber))
	if !ok {
		return false, s.send(conn, tag, resultReply(ResultConnRefused))
	}
	if err := s.send(conn, tag, resultReply(ResultOK)); err != nil {
		return false, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return false, err
	}
	serve(conn)
	return true, nil
}

// subscriber is one Listen stream's queue.
type subscriber struct {
	ch   chan *reply
	dead chan struct{}
	once sync.Once
}

func (sub *subscriber) kill() { sub.once.Do(func() { close(sub.dead) }) }

// subscriberQueue bounds the events queued for one slow listener; a
// listener that falls this far behind is dropped (it reconnects and gets a
// fresh snapshot) rather than stalling AddDevice.
const subscriberQueue = 64

// broadcastLocked queues r for every listener. s.mu is held.
func (s *Server) broadcastLocked(r *reply) {
	for sub := range s.subs {
		select {
		case sub.ch <- r:
		default:
			sub.kill()
			delete(s.subs, sub)
		}
	}
}

// listen turns conn into an event stream: an Attached per present device,
// then live events, all with tag 0, until the client goes, the listener is
// dropped or the Server closes.
func (s *Server) listen(conn net.Conn) {
	sub := &subscriber{ch: make(chan *reply, subscriberQueue), dead: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	snapshot := make([]DeviceEntry, len(s.devices))
	for i, sd := range s.devices {
		snapshot[i] = sd.dev
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()

	// The client sends nothing more; reading tells us when it hangs up.
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(gone)
	}()
	defer func() {
		conn.Close()
		<-gone
	}()

	for i := range snapshot {
		d := snapshot[i]
		if s.send(conn, 0, &reply{MessageType: "Attached", DeviceID: d.DeviceID, Properties: &d}) != nil {
			return
		}
	}
	for {
		select {
		case r := <-sub.ch:
			if s.send(conn, 0, r) != nil {
				return
			}
		case <-sub.dead:
			return
		case <-gone:
			return
		}
	}
}
