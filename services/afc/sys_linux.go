package afc

import "syscall"

func birthNanos(st *syscall.Stat_t) int64 { return syscall.TimespecToNsec(st.Ctim) }
