package backend

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"sync/atomic"

	"github.com/iosmux/iosmux/xpc"
)

// h2Parser reads one direction of a tapped connection as HTTP/2 frames
// carrying RemoteXPC messages (xpc.md §1–§2), for the wire log only:
// it never influences the traffic, and on anything it does not understand
// it logs why and stops parsing that direction.
type h2Parser struct {
	log   *WireLog
	conn  uint64
	dir   string
	total atomic.Int64

	state   parseState
	buf     []byte            // unparsed bytes of the current frame (or detection prefix)
	streams map[uint32][]byte // per-stream XPC reassembly
	broken  map[uint32]bool   // streams whose content is not XPC
}

type parseState int

const (
	stateDetect  parseState = iota // deciding between HTTP/2 and raw bytes
	stateFrames                    // reading frames
	stateRaw                       // not HTTP/2: only counted
	stateStopped                   // gave up after an error
)

// Bounds of what the parser keeps: a frame's payload is at most 16 MiB by
// the 24-bit length; RemoteXPC peers use 16 KiB frames. A message larger
// than maxTapMessage is logged as a size only.
const (
	maxTapFrame   = 1 << 20
	maxTapMessage = 16 << 20
	maxTapStreams = 64
)

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func newH2Parser(l *WireLog, conn uint64, dir string) *h2Parser {
	return &h2Parser{log: l, conn: conn, dir: dir, streams: map[uint32][]byte{}, broken: map[uint32]bool{}}
}

// feed consumes bytes that went through the connection in this direction.
func (p *h2Parser) feed(b []byte) {
	p.total.Add(int64(len(b)))
	switch p.state {
	case stateRaw, stateStopped:
		return
	case stateDetect:
		p.buf = append(p.buf, b...)
		if !p.detect() {
			return
		}
		b, p.buf = p.buf, nil
	}
	p.buf = append(p.buf, b...)
	for p.state == stateFrames && len(p.buf) >= 9 {
		length := int(p.buf[0])<<16 | int(p.buf[1])<<8 | int(p.buf[2])
		if length > maxTapFrame {
			p.stop("frame of " + strconv.Itoa(length) + " bytes: not logged further")
			return
		}
		if len(p.buf) < 9+length {
			return
		}
		p.frame(p.buf[3], p.buf[4], binary.BigEndian.Uint32(p.buf[5:9])&0x7fffffff, p.buf[9:9+length])
		p.buf = p.buf[9+length:]
	}
	if len(p.buf) == 0 {
		p.buf = nil // let a big buffer go
	}
}

// detect decides, from the first bytes, whether this direction is the
// client side of HTTP/2 (the preface), the server side (a SETTINGS frame on
// stream 0 comes first), or something else. It reports whether frames
// start at p.buf (the preface removed).
func (p *h2Parser) detect() bool {
	n := min(len(p.buf), len(h2Preface))
	if bytes.Equal(p.buf[:n], []byte(h2Preface[:n])) {
		if len(p.buf) < len(h2Preface) {
			return false
		}
		p.buf = p.buf[len(h2Preface):]
		p.event("preface")
		p.state = stateFrames
		return true
	}
	if len(p.buf) < 9 {
		if p.buf[0] != 0 { // a SETTINGS frame is far shorter than 64 KiB
			p.state = stateRaw
		}
		return false
	}
	length := int(p.buf[0])<<16 | int(p.buf[1])<<8 | int(p.buf[2])
	if p.buf[3] == 0x4 && binary.BigEndian.Uint32(p.buf[5:9]) == 0 && length%6 == 0 {
		p.state = stateFrames
		return true
	}
	p.state = stateRaw
	p.buf = nil
	return false
}

var frameNames = [...]string{"DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"}

func frameName(t byte) string {
	if int(t) < len(frameNames) {
		return frameNames[t]
	}
	return "UNKNOWN_" + strconv.Itoa(int(t))
}

// frame logs one frame and, for DATA, feeds the stream's XPC reassembly.
func (p *h2Parser) frame(typ, flags byte, stream uint32, payload []byte) {
	p.log.line(p.conn, func(b []byte) []byte {
		b = append(b, `,"dir":"`...)
		b = append(b, p.dir...)
		b = append(b, `","frame":{"type":"`...)
		b = append(b, frameName(typ)...)
		b = append(b, `","stream":`...)
		b = strconv.AppendUint(b, uint64(stream), 10)
		b = append(b, `,"flags":"0x`...)
		b = append(b, hex2(flags)...)
		b = append(b, `","length":`...)
		b = strconv.AppendInt(b, int64(len(payload)), 10)
		b = appendFrameDetail(b, typ, payload)
		return append(b, '}')
	})
	if typ != 0 || len(payload) == 0 {
		return
	}
	data := payload
	if flags&0x8 != 0 { // PADDED
		pad := int(data[0])
		if 1+pad > len(data) {
			return
		}
		data = data[1 : len(data)-pad]
	}
	p.data(stream, data)
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&0xf]})
}

// appendFrameDetail adds the fields a reader of the dialog wants: SETTINGS
// values, WINDOW_UPDATE increments, error codes.
func appendFrameDetail(b []byte, typ byte, payload []byte) []byte {
	switch typ {
	case 0x4: // SETTINGS
		if len(payload)%6 != 0 || len(payload) == 0 {
			return b
		}
		b = append(b, `,"settings":{`...)
		for i := 0; i+6 <= len(payload); i += 6 {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint16(payload[i:])), 10)
			b = append(b, `":`...)
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(payload[i+2:])), 10)
		}
		return append(b, '}')
	case 0x8: // WINDOW_UPDATE
		if len(payload) == 4 {
			b = append(b, `,"increment":`...)
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(payload)&0x7fffffff), 10)
		}
	case 0x3: // RST_STREAM
		if len(payload) == 4 {
			b = append(b, `,"error":`...)
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(payload)), 10)
		}
	case 0x7: // GOAWAY
		if len(payload) >= 8 {
			b = append(b, `,"lastStream":`...)
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(payload)&0x7fffffff), 10)
			b = append(b, `,"error":`...)
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(payload[4:])), 10)
		}
	}
	return b
}

// data appends DATA bytes to the stream's buffer and logs every complete
// XPC message (24-byte wrapper, body_length after it, xpc.md §2.1).
func (p *h2Parser) data(stream uint32, d []byte) {
	if p.broken[stream] {
		return
	}
	buf, ok := p.streams[stream]
	if !ok && len(p.streams) >= maxTapStreams {
		p.stop("too many streams")
		return
	}
	buf = append(buf, d...)
	for len(buf) >= xpc.HeaderLen {
		if binary.LittleEndian.Uint32(buf) != xpc.WrapperMagic {
			p.broken[stream] = true
			p.note(stream, "not an XPC message: stream no longer decoded")
			delete(p.streams, stream)
			return
		}
		size := binary.LittleEndian.Uint64(buf[8:16])
		if size > maxTapMessage {
			p.broken[stream] = true
			p.note(stream, "XPC message of "+strconv.FormatUint(size, 10)+" bytes: stream no longer decoded")
			delete(p.streams, stream)
			return
		}
		end := xpc.HeaderLen + int(size)
		if len(buf) < end {
			break
		}
		p.message(stream, buf[:end])
		buf = buf[end:]
	}
	if len(buf) == 0 {
		delete(p.streams, stream)
		return
	}
	p.streams[stream] = bytes.Clone(buf)
}

func (p *h2Parser) message(stream uint32, raw []byte) {
	m, err := xpc.Decode(raw)
	p.log.line(p.conn, func(b []byte) []byte {
		b = append(b, `,"dir":"`...)
		b = append(b, p.dir...)
		b = append(b, `","stream":`...)
		b = strconv.AppendUint(b, uint64(stream), 10)
		if err != nil {
			b = append(b, `,"undecodable":`...)
			b = appendJSONString(b, err.Error())
			b = append(b, `,"bytes":`...)
			return strconv.AppendInt(b, int64(len(raw)), 10)
		}
		return xpc.AppendJSONMessage(append(b, ','), &m)
	})
}

func (p *h2Parser) event(what string) {
	p.log.line(p.conn, func(b []byte) []byte {
		b = append(b, `,"dir":"`...)
		b = append(b, p.dir...)
		b = append(b, `","event":`...)
		return appendJSONString(b, what)
	})
}

func (p *h2Parser) note(stream uint32, what string) {
	p.log.line(p.conn, func(b []byte) []byte {
		b = append(b, `,"dir":"`...)
		b = append(b, p.dir...)
		b = append(b, `","stream":`...)
		b = strconv.AppendUint(b, uint64(stream), 10)
		b = append(b, `,"note":`...)
		return appendJSONString(b, what)
	})
}

func (p *h2Parser) stop(why string) {
	p.state = stateStopped
	p.buf, p.streams = nil, nil
	p.event("parsing stopped: " + why)
}
