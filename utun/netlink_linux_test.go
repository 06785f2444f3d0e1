package utun

import (
	"encoding/binary"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func nlMsg(typ uint16, seq uint32, body []byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(unix.SizeofNlMsghdr+len(body)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	return append(b, body...)
}

func TestParseAck(t *testing.T) {
	c := &rtnl{seq: 7}
	errno := -int32(syscall.EEXIST)
	eexist := binary.NativeEndian.AppendUint32(nil, uint32(errno))
	tests := []struct {
		name    string
		in      []byte
		done    bool
		wantErr error
	}{
		{"ack", nlMsg(unix.NLMSG_ERROR, 7, make([]byte, 4)), true, nil},
		{"errno", nlMsg(unix.NLMSG_ERROR, 7, eexist), true, syscall.EEXIST},
		{"other seq first", append(nlMsg(unix.NLMSG_ERROR, 6, eexist), nlMsg(unix.NLMSG_ERROR, 7, make([]byte, 4))...), true, nil},
		{"unrelated", nlMsg(unix.RTM_NEWLINK, 7, make([]byte, 16)), false, nil},
		{"short error", nlMsg(unix.NLMSG_ERROR, 7, nil), true, errAny},
		{"length past end", append(nlMsg(unix.NLMSG_ERROR, 7, make([]byte, 4))[:4:4], 1, 2), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, err := c.parseAck(tt.in)
			if done != tt.done {
				t.Fatalf("done = %v, want %v (err %v)", done, tt.done, err)
			}
			switch {
			case tt.wantErr == errAny && err == nil:
				t.Fatal("no error")
			case tt.wantErr != errAny && err != tt.wantErr:
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

var errAny = syscall.Errno(0xffff)

func TestNLAttrPadding(t *testing.T) {
	b := nlAttr(nil, 1, []byte{9})
	if len(b) != 8 || binary.NativeEndian.Uint16(b) != 5 {
		t.Fatalf("attr %x", b)
	}
}

func FuzzParseAck(f *testing.F) {
	f.Add(nlMsg(unix.NLMSG_ERROR, 1, make([]byte, 4)))
	f.Add(append(nlMsg(unix.RTM_NEWROUTE, 1, make([]byte, 12)), nlMsg(unix.NLMSG_ERROR, 1, make([]byte, 4))...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &rtnl{seq: 1}
		c.parseAck(b)
		if p, _, _ := c.parseReply(b, unix.RTM_NEWROUTE); len(p) > len(b) {
			t.Fatalf("payload of %d bytes from %d", len(p), len(b))
		}
	})
}
