package mounter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/lockdown"
)

// Commands.
const (
	cmdLookup          = "LookupImage"
	cmdCopyDevices     = "CopyDevices"
	cmdDevMode         = "QueryDeveloperModeStatus"
	cmdIdentifiers     = "QueryPersonalizationIdentifiers"
	cmdNonce           = "QueryNonce"
	cmdQueryManifest   = "QueryPersonalizationManifest"
	cmdReceiveBytes    = "ReceiveBytes"
	cmdMount           = "MountImage"
	cmdUnmount         = "UnmountImage"
	cmdRollNonce       = "RollPersonalizationNonce"
	cmdRollCryptex     = "RollCryptexNonce"
	cmdHangup          = "Hangup"
	statusComplete     = "Complete"
	statusReceiveAck   = "ReceiveBytesAck"
	imageTypePers      = "Personalized"
	variantDDI         = "DeveloperDiskImage"
	mountPathDeveloper = "/System/Developer"
)

// ImageTypePersonalized is the ImageType of iOS 17+ DDIs; MountPath where
// they are mounted.
const (
	ImageTypePersonalized = imageTypePers
	MountPath             = mountPathDeveloper
)

// UploadIdleTimeout bounds each chunk of an upload: a device that stops
// reading for this long ends it.
const UploadIdleTimeout = 30 * time.Second

// Client sends mounter commands on one connection to the service. Calls
// are not safe for concurrent use (the protocol is one exchange at a
// time). After a failed QueryPersonalizationManifest the device closes the
// connection: open a new one.
type Client struct {
	pc *lockdown.PlistConn
}

// NewClient wraps a connection positioned at the service's first byte.
func NewClient(conn net.Conn) *Client {
	return &Client{pc: lockdown.NewPlistConn(conn, 0)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.pc.Close() }

// request sends one command and reads its reply; an Error reply is a
// *DeviceError (with the reply).
func (c *Client) request(ctx context.Context, req map[string]any) (lockdown.Message, error) {
	cmd, _ := req["Command"].(string)
	if err := c.pc.Send(ctx, req); err != nil {
		return nil, fmt.Errorf("mounter: %s: send: %w", cmd, err)
	}
	rep, err := c.pc.ReceiveMessage(ctx)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("the device closed the connection: %w", err)
		}
		return nil, fmt.Errorf("mounter: %s: read reply: %w", cmd, err)
	}
	return rep, checkReply(cmd, rep)
}

// LookupImage returns the signatures of the mounted images of imageType
// ("Personalized"). iOS 27 answers an empty list even while the DDI is
// mounted: CopyDevices tells.
func (c *Client) LookupImage(ctx context.Context, imageType string) ([][]byte, error) {
	rep, err := c.request(ctx, map[string]any{"Command": cmdLookup, "ImageType": imageType})
	if err != nil {
		return nil, err
	}
	return parseLookup(rep), nil
}

// CopyDevices lists the mounted images. ErrUnknownCommand when the device
// does not support it.
func (c *Client) CopyDevices(ctx context.Context) ([]Entry, error) {
	rep, err := c.request(ctx, map[string]any{"Command": cmdCopyDevices})
	if err != nil {
		return nil, err
	}
	e, ok := parseEntries(rep)
	if !ok {
		return nil, &DeviceError{Command: cmdCopyDevices, Code: ErrorUnknownCommand, Detail: "reply without EntryList"}
	}
	return e, nil
}

// DeveloperModeStatus reads QueryDeveloperModeStatus.
func (c *Client) DeveloperModeStatus(ctx context.Context) (bool, error) {
	rep, err := c.request(ctx, map[string]any{"Command": cmdDevMode})
	if err != nil {
		return false, err
	}
	on, ok := rep.Bool("DeveloperModeStatus")
	if !ok {
		return false, fmt.Errorf("%w: %s reply without DeveloperModeStatus", lockdown.ErrMalformed, cmdDevMode)
	}
	return on, nil
}

// Identifiers reads QueryPersonalizationIdentifiers (with
// PersonalizedImageType, as go-ios sends it).
func (c *Client) Identifiers(ctx context.Context) (Identifiers, error) {
	rep, err := c.request(ctx, map[string]any{"Command": cmdIdentifiers, "PersonalizedImageType": variantDDI})
	if err != nil {
		return Identifiers{}, err
	}
	return parseIdentifiers(rep)
}

// Nonce reads the DDI personalization nonce.
func (c *Client) Nonce(ctx context.Context) ([]byte, error) {
	rep, err := c.request(ctx, map[string]any{"Command": cmdNonce, "PersonalizedImageType": variantDDI})
	if err != nil {
		return nil, err
	}
	n, ok := rep.Data("PersonalizationNonce")
	if !ok || len(n) == 0 {
		return nil, fmt.Errorf("%w: %s reply without PersonalizationNonce", lockdown.ErrMalformed, cmdNonce)
	}
	return n, nil
}

// Manifest asks for the manifest the device keeps for the image with this
// SHA-384. A device without one answers an error that errors.Is
// ErrNoManifest and closes the connection.
func (c *Client) Manifest(ctx context.Context, imageDigest []byte) ([]byte, error) {
	rep, err := c.request(ctx, map[string]any{"Command": cmdQueryManifest, "PersonalizedImageType": variantDDI,
		"ImageType": variantDDI, "ImageSignature": imageDigest})
	if err != nil {
		var de *DeviceError
		if errors.As(err, &de) {
			return nil, err
		}
		// A device that closes without an error reply means the same.
		if lockdown.IsClosed(err) {
			return nil, &DeviceError{Command: cmdQueryManifest, Code: "closed", Detail: err.Error()}
		}
		return nil, err
	}
	m, ok := rep.Data("ImageSignature")
	if !ok || len(m) == 0 {
		return nil, &DeviceError{Command: cmdQueryManifest, Code: "NoManifest", Detail: "reply without ImageSignature"}
	}
	return m, nil
}

// Upload sends the image: ReceiveBytes, then size raw bytes from r, then
// the device's Complete. progress, if set, is told of every chunk written.
func (c *Client) Upload(ctx context.Context, imageType string, signature []byte, r io.Reader, size int64, progress func(done int64)) error {
	rep, err := c.request(ctx, map[string]any{"Command": cmdReceiveBytes, "ImageType": imageType,
		"ImageSize": uint64(size), "ImageSignature": signature})
	if err != nil {
		return err
	}
	if st, _ := rep.String("Status"); st != statusReceiveAck {
		return fmt.Errorf("mounter: %s: reply status %q, want %s", cmdReceiveBytes, st, statusReceiveAck)
	}
	if err := c.copyImage(ctx, r, size, progress); err != nil {
		return fmt.Errorf("mounter: uploading the image: %w", err)
	}
	rep, err = c.pc.ReceiveMessage(ctx)
	if err != nil {
		return fmt.Errorf("mounter: %s: waiting for Complete: %w", cmdReceiveBytes, err)
	}
	if err := checkReply(cmdReceiveBytes, rep); err != nil {
		return err
	}
	if st, _ := rep.String("Status"); st != statusComplete {
		return fmt.Errorf("mounter: %s: final status %q, want %s", cmdReceiveBytes, st, statusComplete)
	}
	return nil
}

// copyImage writes exactly size bytes of r, each chunk within
// UploadIdleTimeout, interrupted when ctx ends.
func (c *Client) copyImage(ctx context.Context, r io.Reader, size int64, progress func(int64)) error {
	nc := c.pc.Conn()
	stop := deadline.Interrupt(ctx, nc.SetWriteDeadline)
	defer stop()
	defer nc.SetWriteDeadline(time.Time{})
	buf := make([]byte, 1<<20)
	var done int64
	for done < size {
		n, rerr := io.ReadFull(r, buf[:min(int64(len(buf)), size-done)])
		if n > 0 {
			nc.SetWriteDeadline(deadline.Earliest(ctx, UploadIdleTimeout))
			if _, err := nc.Write(buf[:n]); err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return err
			}
			done += int64(n)
			if progress != nil {
				progress(done)
			}
		}
		if rerr != nil && done < size {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				return fmt.Errorf("the image ended after %d of %d bytes", done, size)
			}
			return rerr
		}
	}
	return nil
}

// Mount mounts the uploaded image with its manifest and trust cache.
func (c *Client) Mount(ctx context.Context, signature, trustCache []byte, infoPlist map[string]any) error {
	req := map[string]any{"Command": cmdMount, "ImageType": imageTypePers, "ImageSignature": signature, "ImageTrustCache": trustCache}
	if infoPlist != nil {
		req["ImageInfoPlist"] = infoPlist
	}
	rep, err := c.request(ctx, req)
	if err != nil {
		return err
	}
	if st, _ := rep.String("Status"); st != statusComplete {
		return fmt.Errorf("mounter: %s: status %q, want %s", cmdMount, st, statusComplete)
	}
	return nil
}

// Unmount unmounts the image at mountPath (MountPath for the DDI).
func (c *Client) Unmount(ctx context.Context, mountPath string) error {
	_, err := c.request(ctx, map[string]any{"Command": cmdUnmount, "MountPath": mountPath})
	return err
}

// RollNonce asks for a new personalization nonce. Devices answer with a
// reply or by closing the connection; both are success.
func (c *Client) RollNonce(ctx context.Context) error {
	_, err := c.request(ctx, map[string]any{"Command": cmdRollNonce})
	if err != nil && lockdown.IsClosed(err) {
		return nil
	}
	return err
}

// Hangup ends the session (go-ios sends it last); no reply comes.
func (c *Client) Hangup(ctx context.Context) error {
	return c.pc.Send(ctx, map[string]any{"Command": cmdHangup})
}
