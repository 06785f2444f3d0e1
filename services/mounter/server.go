package mounter

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/lockdown"
)

// DefaultMaxImageSize bounds ReceiveBytes' ImageSize on the device side
// (SIM: real DDIs are tens of megabytes).
const DefaultMaxImageSize = 2 << 30

// NonceSize is the length of the nonce the device role draws (SIM: hosts
// treat it as opaque; the real length is unconfirmed).
const NonceSize = 32

// ServerConfig configures the device role.
type ServerConfig struct {
	// Identifiers returns the PersonalizationIdentifiers (BoardId,
	// ChipID, UniqueChipID, SecurityDomain, the four mode bools, Ap,*).
	Identifiers func() map[string]any
	// DeveloperMode reports whether Developer Mode is on; MountImage of
	// the DDI is refused while it is off.
	DeveloperMode func() bool
	// Verify checks a manifest (ticket) for an image at MountImage: nil
	// accepts every one. The simulator recomputes the TSS stand-in's
	// ticket.
	Verify func(ticket, nonce, imageDigest, trustCacheDigest []byte) error
	// MaxImageSize bounds an upload; 0 means DefaultMaxImageSize.
	MaxImageSize int64
	// OnChange, if set, is called (without locks held) after a mount,
	// an unmount, a new nonce or a new stored manifest.
	OnChange func()
	// EmptyLookupWhileMounted reproduces iOS 27, whose LookupImage lists
	// nothing even while the DDI is mounted.
	EmptyLookupWhileMounted bool
	// RequestTimeout bounds reading a request's body and every write; 0
	// means lockdown.DefaultTimeout. The wait for the next request is
	// unbounded (hosts keep the connection between commands).
	RequestTimeout time.Duration
}

// Image is the mounted DDI.
type Image struct {
	Digest           []byte // SHA-384 of the image
	Signature        []byte // the manifest it was mounted with
	TrustCacheDigest []byte
}

// Manifest is a stored personalization manifest.
type Manifest struct {
	Ticket           []byte `json:"ticket"`
	TrustCacheDigest []byte `json:"trustCacheDigest"`
}

// State is what a device keeps across reboots (SIM: the nonce and the
// stored manifests persist, so a re-mount after a reboot takes the offline
// branch; the mount itself does not).
type State struct {
	Nonce     []byte              `json:"nonce"`
	Manifests map[string]Manifest `json:"manifests"` // by hex image digest
}

// Server is the device role: the mounter's state and its command handler.
// Safe for concurrent use.
type Server struct {
	cfg ServerConfig

	mu        sync.Mutex
	nonce     []byte
	manifests map[string]Manifest
	mounted   *Image
}

// NewServer returns a device role with a fresh nonce, no manifests and
// nothing mounted.
func NewServer(cfg ServerConfig) *Server {
	if cfg.MaxImageSize <= 0 {
		cfg.MaxImageSize = DefaultMaxImageSize
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = lockdown.DefaultTimeout
	}
	return &Server{cfg: cfg, nonce: newNonce(), manifests: map[string]Manifest{}}
}

func newNonce() []byte {
	b := make([]byte, NonceSize)
	rand.Read(b)
	return b
}

// State returns the persistent state.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{Nonce: bytes.Clone(s.nonce), Manifests: maps.Clone(s.manifests)}
}

// Restore replaces the persistent state (at boot).
func (s *Server) Restore(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(st.Nonce) > 0 {
		s.nonce = bytes.Clone(st.Nonce)
	}
	s.manifests = maps.Clone(st.Manifests)
	if s.manifests == nil {
		s.manifests = map[string]Manifest{}
	}
}

// Nonce is the current personalization nonce.
func (s *Server) Nonce() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.nonce)
}

// StoreManifest keeps a manifest for an image, as a successful mount does
// (the simulator's pre-seeded manifests).
func (s *Server) StoreManifest(imageDigest []byte, m Manifest) {
	s.mu.Lock()
	s.manifests[hex.EncodeToString(imageDigest)] = m
	s.mu.Unlock()
	s.changed()
}

// Mounted returns the mounted image.
func (s *Server) Mounted() (Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mounted == nil {
		return Image{}, false
	}
	return *s.mounted, true
}

// Reset forgets the mount, as a reboot does; OnChange is not called.
func (s *Server) Reset() {
	s.mu.Lock()
	s.mounted = nil
	s.mu.Unlock()
}

func (s *Server) changed() {
	if s.cfg.OnChange != nil {
		s.cfg.OnChange()
	}
}

// session is one connection's state: the image received by ReceiveBytes.
type session struct {
	s      *Server
	pc     *lockdown.PlistConn
	staged []byte // digest of the received image, nil if none
}

// Serve answers commands on conn (positioned after RSDCheckin or
// StartService) until the host hangs up, sends something unreadable, a
// command that ends the connection (Hangup, a failed manifest query, a
// nonce roll) arrives, or ctx ends.
func (s *Server) Serve(ctx context.Context, conn net.Conn) {
	ss := &session{s: s, pc: lockdown.NewPlistConn(conn, lockdown.MaxFrameLen)}
	for {
		req, err := ss.pc.ReceiveMessage(ctx)
		if err != nil {
			return
		}
		cmd, _ := req.String("Command")
		rep, keep := ss.handle(ctx, conn, cmd, req)
		if rep != nil {
			wctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			err := ss.pc.Send(wctx, rep)
			cancel()
			if err != nil {
				return
			}
		}
		if !keep {
			return
		}
	}
}

func fail(code, detail string) map[string]any {
	m := map[string]any{"Error": code}
	if detail != "" {
		m["DetailedError"] = detail
	}
	return m
}

func complete(kv ...any) map[string]any {
	m := map[string]any{"Status": statusComplete}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// handle answers one command. keep false ends the connection after the
// reply (if any) is sent.
func (ss *session) handle(ctx context.Context, conn net.Conn, cmd string, req lockdown.Message) (rep map[string]any, keep bool) {
	s := ss.s
	switch cmd {
	case cmdLookup:
		sigs := []any{}
		if img, ok := s.Mounted(); ok && !s.cfg.EmptyLookupWhileMounted {
			if t, _ := req.String("ImageType"); t == imageTypePers || t == "" {
				sigs = append(sigs, img.Digest)
			}
		}
		return complete("ImageSignature", sigs), true
	case cmdCopyDevices:
		list := []any{}
		if img, ok := s.Mounted(); ok {
			list = append(list, map[string]any{"DiskImageType": imageTypePers, "PersonalizedImageType": variantDDI,
				"MountPath": mountPathDeveloper, "ImageSignature": img.Digest, "IsMounted": true})
		}
		return complete("EntryList", list), true
	case cmdDevMode:
		return complete("DeveloperModeStatus", s.devMode()), true
	case cmdIdentifiers:
		ids := map[string]any{}
		if s.cfg.Identifiers != nil {
			ids = s.cfg.Identifiers()
		}
		return complete("PersonalizationIdentifiers", ids), true
	case cmdNonce:
		return complete("PersonalizationNonce", s.Nonce()), true
	case cmdQueryManifest:
		return ss.queryManifest(req)
	case cmdReceiveBytes:
		return ss.receiveBytes(ctx, conn, req)
	case cmdMount:
		return ss.mount(req), true
	case cmdUnmount:
		return ss.unmount(req), true
	case cmdRollNonce, cmdRollCryptex:
		if cmd == cmdRollNonce {
			s.mu.Lock()
			s.nonce = newNonce()
			s.mu.Unlock()
			s.changed()
		}
		return nil, false
	case cmdHangup:
		return nil, false
	}
	return fail(ErrorUnknownCommand, ""), true
}

func (s *Server) devMode() bool {
	return s.cfg.DeveloperMode == nil || s.cfg.DeveloperMode()
}

// queryManifest returns the manifest kept for the image, if it is still
// valid for the current nonce; otherwise the error reply, and the
// connection ends (as on a device).
func (ss *session) queryManifest(req lockdown.Message) (map[string]any, bool) {
	s := ss.s
	digest, _ := req.Data("ImageSignature")
	s.mu.Lock()
	m, ok := s.manifests[hex.EncodeToString(digest)]
	nonce := bytes.Clone(s.nonce)
	s.mu.Unlock()
	if ok && len(digest) > 0 && (s.cfg.Verify == nil || s.cfg.Verify(m.Ticket, nonce, digest, m.TrustCacheDigest) == nil) {
		return complete("ImageSignature", m.Ticket), true
	}
	return fail(ErrorInternal, nsError(-2, "Failed to find a cached manifest (im4m) for variant DeveloperDiskImage (personalization required).", "")), false
}

// receiveBytes acknowledges, reads exactly ImageSize raw bytes (hashing
// them; the simulator keeps no image), and answers Complete.
func (ss *session) receiveBytes(ctx context.Context, conn net.Conn, req lockdown.Message) (map[string]any, bool) {
	s := ss.s
	size, okS := req.Uint("ImageSize")
	_, okT := req.String("ImageType")
	if !okS || !okT {
		return fail(ErrorInternal, nsError(-3, "Invalid value for ImageSize or ImageType.", "")), true
	}
	if size == 0 || size > uint64(s.cfg.MaxImageSize) {
		return fail(ErrorInternal, nsError(-3, fmt.Sprintf("Invalid value for ImageSize: %d.", size), "")), true
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	err := ss.pc.Send(wctx, map[string]any{"Status": statusReceiveAck})
	cancel()
	if err != nil {
		return nil, false
	}
	h := sha512.New384()
	if err := readImage(ctx, conn, h, int64(size)); err != nil {
		return nil, false
	}
	ss.staged = h.Sum(nil)
	return complete(), true
}

// readImage copies exactly n bytes of conn into w; each read must make
// progress within UploadIdleTimeout.
func readImage(ctx context.Context, conn net.Conn, w io.Writer, n int64) error {
	stop := deadline.Interrupt(ctx, conn.SetReadDeadline)
	defer stop()
	defer conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 1<<20)
	for n > 0 {
		conn.SetReadDeadline(time.Now().Add(UploadIdleTimeout))
		k, err := conn.Read(buf[:min(int64(len(buf)), n)])
		w.Write(buf[:k])
		n -= int64(k)
		if err != nil && n > 0 {
			return err
		}
	}
	return nil
}

const msgAlreadyMounted = "A disk image of type Personalized/DeveloperDiskImage is already mounted at /System/Developer."

func mountFailed(text, cause string) map[string]any {
	return fail(ErrorImageMountFailed, nsError(-2, text, cause))
}

func (ss *session) mount(req lockdown.Message) map[string]any {
	s := ss.s
	t, _ := req.String("ImageType")
	sig, okSig := req.Data("ImageSignature")
	tc, okTC := req.Data("ImageTrustCache")
	switch {
	case t != imageTypePers:
		return fail(ErrorInternal, nsError(-3, fmt.Sprintf("Invalid value for ImageType: %s.", t), ""))
	case !okSig || !okTC:
		return fail(ErrorInternal, nsError(-3, "Invalid value for ImageSignature or ImageTrustCache.", ""))
	case !s.devMode():
		return mountFailed("Failed to mount /private/var/run/mobile_image_mounter/image.dmg.",
			`Error Domain=com.apple.MobileStorage.ErrorDomain Code=-4 "Developer mode is not enabled."`)
	}
	if _, ok := s.Mounted(); ok {
		return mountFailed(msgAlreadyMounted, "")
	}
	if ss.staged == nil {
		return mountFailed("No image has been received.", "")
	}
	tcDigest := sha384(tc)
	nonce := s.Nonce()
	if s.cfg.Verify != nil {
		if err := s.cfg.Verify(sig, nonce, ss.staged, tcDigest); err != nil {
			return mountFailed("Failed to mount /private/var/run/mobile_image_mounter/image.dmg.",
				fmt.Sprintf(`Error Domain=com.apple.MobileStorage.ErrorDomain Code=-2 "Failed to personalize: %s"`, err))
		}
	}
	s.mu.Lock()
	if s.mounted != nil {
		s.mu.Unlock()
		return mountFailed(msgAlreadyMounted, "")
	}
	s.mounted = &Image{Digest: ss.staged, Signature: bytes.Clone(sig), TrustCacheDigest: tcDigest}
	s.manifests[hex.EncodeToString(ss.staged)] = Manifest{Ticket: bytes.Clone(sig), TrustCacheDigest: tcDigest}
	s.mu.Unlock()
	s.changed()
	return complete()
}

func (ss *session) unmount(req lockdown.Message) map[string]any {
	s := ss.s
	v, ok := req["MountPath"]
	path, isString := v.(string)
	if !ok || !isString {
		return fail(ErrorInternal, nsError(-3, fmt.Sprintf("Invalid value for MountPath: %v.", v), ""))
	}
	s.mu.Lock()
	if s.mounted == nil || path != mountPathDeveloper {
		s.mu.Unlock()
		return fail(ErrorInternal, nsError(-2, "There is no matching entry in the device map for "+path+".", ""))
	}
	s.mounted = nil
	s.mu.Unlock()
	s.changed()
	return complete()
}

func sha384(b []byte) []byte {
	h := sha512.Sum384(b)
	return h[:]
}

// ErrTicketMismatch is what a Verify may return for a manifest that is not
// for this device, nonce and image.
var ErrTicketMismatch = errors.New("the manifest does not match this device, nonce and image")
