#!/bin/sh
# perf-breakdown.sh PERF_DATA PID... — where a process's CPU went, by kind of
# work, from a `perf record -g` file: the share of its samples whose leaf is
# AES-GCM, another user-space function, a kernel copy, socket-buffer memory,
# the network stack, scheduling, or a softirq that ran while it was on the
# CPU. docs/perf.md ("What the CoreDeviceProxy client's CPU is made of")
# uses it; PIDs are process ids (perf script's pid field), not thread ids.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 PERF_DATA PID..." >&2; exit 2; }
data=$1; shift
perf script -i "$data" -F pid,ip,sym 2>/dev/null | awk -v pids="$*" '
BEGIN { n = split(pids, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
/^ *[0-9]+ *$/ { pid = $1; depth = 0; stack = ""; next }
NF == 0 {
	if (pid in want && depth > 0) { c[kind(leafip, leaf, stack)]++; total++ }
	depth = 0; stack = ""; next
}
{ depth++; if (depth == 1) { leafip = $1; leaf = $2 }; stack = stack " " $2 }
function kind(ip, l, s) {
	if (s ~ / handle_softirqs/ && ip ~ /^ffff/) return "kernel: softirq run in its time (any socket)"
	if (ip !~ /^ffff/) {
		if (l == "[unknown]") return "user: unresolved (binary rebuilt or gone)"
		if (l ~ /gcmAes|aes\.|\/gcm\./) return "user: AES-GCM"
		if (l ~ /checksum/) return "user: checksum"
		if (l ~ /^runtime\.mem(move|clr)/) return "user: memmove, memclr"
		if (l ~ /^(runtime|internal)\./) return "user: Go runtime, syscall stubs"
		return "user: other"
	}
	if (l ~ /copy_(to|from)_iter|copy_page|copy_user|memcpy/) return "kernel: copy to or from user"
	if (s ~ /page_fault/) return "kernel: page faults"
	if (l ~ /folio|page|memcg|kmem|slab|kfree|alloc|charge|free/) return "kernel: buffer memory"
	if (l ~ /sched|switch|wake|spin|futex|ep_|epoll|idle/) return "kernel: scheduling, wake-ups, locks"
	if (l ~ /tcp|ip6|ipv6|ip_|netif|skb|sock|unix|tun|dev_|nf_|inet|napi|datagram/) return "kernel: network stack"
	if (l ~ /syscall|entry|exit_to_user|irqentry/) return "kernel: system call entry and exit"
	return "kernel: other"
}
END {
	if (total == 0) { print "no samples for pids " pids > "/dev/stderr"; exit 1 }
	for (k in c) printf "%5.1f%%  %s\n", 100 * c[k] / total, k | "sort -rn"
	close("sort -rn")
	printf "%d samples\n", total
}'
