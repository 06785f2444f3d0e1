package usbmux

import (
	"errors"
	"fmt"
	"io"

	"github.com/iosmux/iosmux/internal/safeplist"
	"howett.net/plist"
)

// ParsePacket splits one plist-protocol message off the front of b: the
// header, its payload and whatever bytes follow. It checks the length bound
// (max 0 means MaxMessageLen) and that the header announces the plist
// protocol.
func ParsePacket(b []byte, max int) (h Header, payload, rest []byte, err error) {
	h, err = ParseHeader(b, max)
	if err != nil {
		return Header{}, nil, nil, err
	}
	if len(b) < int(h.Length) {
		return Header{}, nil, nil, fmt.Errorf("%w: message announces %d bytes, only %d present", ErrMalformed, h.Length, len(b))
	}
	if err := checkPlistHeader(h); err != nil {
		return Header{}, nil, nil, err
	}
	return h, b[HeaderLen:h.Length], b[h.Length:], nil
}

func checkPlistHeader(h Header) error {
	if h.Version != VersionPlist || h.Message != MessagePlist {
		return fmt.Errorf("%w: version %d message %v, want the plist protocol (version 1, message 8)", ErrMalformed, h.Version, h.Message)
	}
	return nil
}

// AppendPacket appends a plist-protocol message with the given tag and
// payload to b.
func AppendPacket(b []byte, tag uint32, payload []byte) []byte {
	h := Header{Length: uint32(HeaderLen + len(payload)), Version: VersionPlist, Message: MessagePlist, Tag: tag}
	return append(h.Append(b), payload...)
}

// writePacket encodes v as an XML plist and sends it as one message with a
// single Write (so concurrent writers on a socket never interleave halves).
func writePacket(w io.Writer, tag uint32, v any) error {
	payload, err := plist.Marshal(v, plist.XMLFormat)
	if err != nil {
		return fmt.Errorf("usbmux: encode plist: %w", err)
	}
	if HeaderLen+len(payload) > MaxMessageLen {
		return fmt.Errorf("usbmux: message of %d bytes exceeds the limit of %d", HeaderLen+len(payload), MaxMessageLen)
	}
	_, err = w.Write(AppendPacket(make([]byte, 0, HeaderLen+len(payload)), tag, payload))
	return err
}

// readPacket reads exactly one message from r: the header, then the payload
// it announces. It never reads past the message, so on a Connect socket the
// device's first bytes stay in the socket for the caller. Deadlines are the
// caller's business.
func readPacket(r io.Reader, max int) (Header, []byte, error) {
	var hb [HeaderLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return Header{}, nil, err
	}
	h, err := ParseHeader(hb[:], max)
	if err != nil {
		return Header{}, nil, err
	}
	payload := make([]byte, h.PayloadLen())
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, nil, fmt.Errorf("usbmux: read %d-byte payload: %w", len(payload), err)
	}
	return h, payload, nil
}

// decodePlist unmarshals an XML or binary plist into v (internal/safeplist:
// no text formats, no panics).
func decodePlist(b []byte, v any) error {
	if err := safeplist.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}
