// Package crash reaches a device's crash reports in both roles:
// com.apple.crashreportmover, which moves pending reports into the crash
// folder and answers "ping", and com.apple.crashreportcopymobile, AFC
// rooted at that folder. services/reach opens both, by RSD name (the
// .shim.remote names) or lockdown name. docs/protocols/crash.md has the
// details.
//
//	host                                   device
//	open crashreportmover ──────────────▶   (moves pending reports)
//	              ◀─────────────────────── "ping\0"
//	open crashreportcopymobile ─────────▶
//	AFC READ_DIR / GET_FILE_INFO / FILE_OPEN / READ / REMOVE_PATH …
//
// Client lists, pulls, clears and watches the folder through a Folder, the
// AFC client of the crashreportcopymobile connection (services/afc's; this
// package does not import it, as service packages reach each other only
// through services/reach). ParseHeader reads an .ips report's first line;
// SavedReport recognises the log line a device writes when it saves one,
// which is how a watcher learns of new reports at once.
package crash
