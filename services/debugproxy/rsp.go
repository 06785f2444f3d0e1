package debugproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The GDB remote serial protocol's framing (docs/protocols/debugproxy.md
// §2): $payload#cs, escapes, run-length encoding, acknowledgements.

const (
	// MaxPacket bounds a packet's payload as sent (escaped, compressed)
	// and as decoded; debugserver advertises far less.
	MaxPacket = 1 << 20
	// interruptByte stops a running process (lldb's ^C).
	interruptByte = 0x03
	// maxResends bounds how often a packet the peer refused ('-') is sent
	// again.
	maxResends = 8
)

// ErrPacketTooLong: a packet exceeds MaxPacket.
var ErrPacketTooLong = errors.New("debugproxy: packet too long")

// ChecksumError is a packet whose checksum does not match its payload.
type ChecksumError struct {
	Got, Want byte
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("debugproxy: packet checksum %02x, computed %02x", e.Got, e.Want)
}

// Conn is one end of an RSP connection, in either role: both read and
// write the same packets. In ack mode (the start) every good packet read is
// acknowledged with '+' and a bad one with '-', and a '-' from the peer
// resends the last packet written; NoAck ends that after QStartNoAckMode.
//
// One goroutine may Read while another writes (a server waiting for an
// interrupt while its process runs).
type Conn struct {
	c   net.Conn
	r   *bufio.Reader
	ack atomic.Bool

	wmu   sync.Mutex
	last  []byte // the last packet written, for a resend
	nacks int    // resends of last so far
	// Timeout bounds each read and write; 0 means none (a debugger may sit
	// idle for as long as its user does).
	Timeout time.Duration
}

// NewConn wraps c, in ack mode.
func NewConn(c net.Conn) *Conn {
	cn := &Conn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	cn.ack.Store(true)
	return cn
}

// NoAck leaves ack mode: from now on nothing is acknowledged.
func (c *Conn) NoAck() { c.ack.Store(false) }

// AckMode reports whether packets are still acknowledged.
func (c *Conn) AckMode() bool { return c.ack.Load() }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Packet is what Read returns: a packet's decoded payload, or an interrupt.
type Packet struct {
	Data      []byte
	Interrupt bool
}

func (c *Conn) readDeadline() {
	if c.Timeout > 0 {
		c.c.SetReadDeadline(time.Now().Add(c.Timeout))
	}
}

// writeRaw writes bytes as they are, whole, under the write lock.
func (c *Conn) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.Timeout > 0 {
		c.c.SetWriteDeadline(time.Now().Add(c.Timeout))
	}
	_, err := c.c.Write(b)
	return err
}

// Read returns the next packet or interrupt. Acknowledgements are consumed
// ('-' resends the last packet written). In ack mode a packet with a bad
// checksum is refused with '-' and skipped; after NoAck it is skipped.
func (c *Conn) Read() (Packet, error) {
	for {
		c.readDeadline()
		b, err := c.r.ReadByte()
		if err != nil {
			return Packet{}, err
		}
		switch b {
		case '+':
			continue
		case '-':
			if c.AckMode() {
				if err := c.resend(); err != nil {
					return Packet{}, err
				}
			}
			continue
		case interruptByte:
			return Packet{Interrupt: true}, nil
		case '$':
		default:
			continue // noise between packets
		}
		p, err := c.readPacket()
		var ce *ChecksumError
		if errors.As(err, &ce) {
			if c.AckMode() {
				if err := c.writeRaw([]byte{'-'}); err != nil {
					return Packet{}, err
				}
			}
			continue
		}
		if err != nil {
			return Packet{}, err
		}
		if c.AckMode() {
			// A peer that hung up after its last packet (the reply to
			// k) cannot take the ack; the packet still counts, and the
			// next exchange reports the hang-up.
			c.writeRaw([]byte{'+'})
		}
		return Packet{Data: p}, nil
	}
}

// readPacket reads after '$' to the checksum and decodes the payload.
func (c *Conn) readPacket() ([]byte, error) {
	var raw []byte
	var sum byte
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return nil, noEOF(err)
		}
		if b == '#' {
			break
		}
		if len(raw) >= MaxPacket {
			return nil, ErrPacketTooLong
		}
		raw = append(raw, b)
		sum += b
	}
	var cs [2]byte
	if _, err := io.ReadFull(c.r, cs[:]); err != nil {
		return nil, noEOF(err)
	}
	got, ok := unhex2(cs[0], cs[1])
	if !ok {
		return nil, fmt.Errorf("debugproxy: packet checksum %q is not hex", cs[:])
	}
	if got != sum {
		return nil, &ChecksumError{Got: got, Want: sum}
	}
	return Decode(raw)
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Decode undoes a payload's escapes ('}' then the byte XOR 0x20) and
// run-length encoding (a byte, '*', then a count byte n: n-29 more copies).
func Decode(raw []byte) ([]byte, error) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		switch b {
		case '}':
			i++
			if i == len(raw) {
				return nil, errors.New("debugproxy: packet ends in an escape")
			}
			out = append(out, raw[i]^0x20)
		case '*':
			i++
			if i == len(raw) || len(out) == 0 {
				return nil, errors.New("debugproxy: run-length marker without a byte to repeat or a count")
			}
			n := int(raw[i]) - 29
			if n < 0 {
				return nil, fmt.Errorf("debugproxy: run-length count %q", raw[i])
			}
			if len(out)+n > MaxPacket {
				return nil, ErrPacketTooLong
			}
			last := out[len(out)-1]
			for range n {
				out = append(out, last)
			}
		default:
			out = append(out, b)
		}
	}
	return out, nil
}

// Encode frames a payload: '$', the payload with '#', '$', '}' and '*'
// escaped, '#', the checksum in two lower-case hex digits.
func Encode(dst, payload []byte) []byte {
	dst = append(dst, '$')
	var sum byte
	for _, b := range payload {
		switch b {
		case '#', '$', '}', '*':
			dst = append(dst, '}', b^0x20)
			sum += '}' + (b ^ 0x20)
		default:
			dst = append(dst, b)
			sum += b
		}
	}
	return append(dst, '#', hexDigit[sum>>4], hexDigit[sum&15])
}

const hexDigit = "0123456789abcdef"

func unhex(b byte) (byte, bool) {
	switch {
	case b >= '0' && b <= '9':
		return b - '0', true
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10, true
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

// Write sends one packet. In ack mode it is kept for a resend when the
// peer answers '-' (Read handles that).
func (c *Conn) Write(payload []byte) error {
	pkt := Encode(nil, payload)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.AckMode() {
		c.last, c.nacks = pkt, 0
	}
	if c.Timeout > 0 {
		c.c.SetWriteDeadline(time.Now().Add(c.Timeout))
	}
	_, err := c.c.Write(pkt)
	return err
}

// resend writes the last packet again, for a peer's '-'.
func (c *Conn) resend() error {
	c.wmu.Lock()
	last := c.last
	c.nacks++
	n := c.nacks
	c.wmu.Unlock()
	if last == nil {
		return nil
	}
	if n > maxResends {
		return fmt.Errorf("debugproxy: the peer refused the same packet %d times", n)
	}
	return c.writeRaw(last)
}

// Interrupt sends the interrupt byte (stop a running process).
func (c *Conn) Interrupt() error { return c.writeRaw([]byte{interruptByte}) }

// Call sends a packet and returns the reply's payload: the host's side of
// one exchange (in ack mode the reply is acknowledged by Read).
func (c *Conn) Call(payload string) (string, error) {
	if err := c.Write([]byte(payload)); err != nil {
		return "", err
	}
	for {
		p, err := c.Read()
		if err != nil {
			return "", err
		}
		if !p.Interrupt {
			return string(p.Data), nil
		}
	}
}
