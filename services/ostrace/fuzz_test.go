package ostrace

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
)

// FuzzParseRecord: no input panics; a decoded record encodes to bytes that
// decode to the same record.
func FuzzParseRecord(f *testing.F) {
	wire := testkit.ReadHex(f, "log01_os_trace_record.hex")
	f.Add(wire[5:])
	r := log01
	r.Subsystem, r.Category, r.Extra = "", "", []byte{1, 2}
	f.Add(AppendRecord(nil, &r))
	// The epoch's own second with microseconds, written by hand so that an
	// encoder that drops them cannot also make the seed.
	epoch := AppendRecord(nil, &r)
	binary.LittleEndian.PutUint64(epoch[offSeconds:], 0)
	binary.LittleEndian.PutUint32(epoch[offMicros:], 77872)
	f.Add(epoch)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		again, err := ParseRecord(AppendRecord(nil, &r))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("re-parse =\n %+v\nwant\n %+v", again, r)
		}
	})
}

// FuzzReadFrame: the frame reader bounds every length and never panics.
func FuzzReadFrame(f *testing.F) {
	f.Add(testkit.ReadHex(f, "log01_os_trace_record.hex"))
	f.Add(testkit.ReadHex(f, "log02_os_trace_start_activity_reply.hex"))
	f.Add([]byte{3, 2, 0, 0, 0, 'h', 'i'})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		for {
			m, p, err := readFrame(br, nil)
			if err != nil {
				return
			}
			if len(p) > maxArchiveChunk {
				t.Fatalf("a %d-byte payload passed", len(p))
			}
			switch m {
			case markerReply:
				parseReply(p)
			case markerRecord:
				ParseRecord(p)
			}
		}
	})
}
