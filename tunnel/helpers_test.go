package tunnel

import (
	"bytes"
	"io"
	"testing/iotest"
)

func testkitOneByte(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }
