package zipconduit

import "github.com/iosmux/iosmux/internal/ipa"

func ipaLimits() ipa.Limits { return ipa.Limits{MaxEntries: 1000, MaxFile: 1 << 20, MaxTotal: 4 << 20} }
