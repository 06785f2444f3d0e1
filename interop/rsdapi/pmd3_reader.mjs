// A reader of pymobiledevice3's tunneld JSON, written from
// docs/protocols/tunneld-api.md §1.3–§1.4 the way its two consumers read it:
//   - jkcoxson/idevice tunneld.rs: its own HTTP/1.1 client ("Connection:
//     close", Content-Length or chunked body), requires a JSON object, takes
//     the first entry per UDID, skips entries that do not parse;
//   - pymobiledevice3 tunneld/api.py: every entry of every UDID, the
//     (tunnel-address, tunnel-port) pair an RSD connection is opened to.
// Usage: node pmd3_reader.mjs <port> <udid-for-start-tunnel>
// Prints one JSON document with what it read; exits non-zero on any shape
// error.
import { get } from '../lib/http1.mjs';

function entryOK(e) {
  return e !== null && typeof e === 'object' &&
    typeof e['tunnel-address'] === 'string' &&
    Number.isInteger(e['tunnel-port']) && e['tunnel-port'] > 0 && e['tunnel-port'] < 65536 &&
    typeof e['interface'] === 'string';
}

const port = Number(process.argv[2]);
const startUdid = process.argv[3];
const out = {};

const list = await get(port, '/');
if (list.status !== 200) throw new Error(`GET / answered ${list.status}`);
if (!/^application\/json/.test(list.headers['content-type'] || '')) throw new Error('GET / is not JSON');
const tunnels = JSON.parse(list.body);
if (tunnels === null || typeof tunnels !== 'object' || Array.isArray(tunnels)) throw new Error('GET / is not an object');
out.all = {};   // api.py: every entry
out.first = {}; // idevice: first parsable entry per UDID
for (const [udid, entries] of Object.entries(tunnels)) {
  if (!Array.isArray(entries)) throw new Error(`entries of ${udid} are not an array`);
  out.all[udid] = entries.filter(entryOK).map((e) => [e['tunnel-address'], e['tunnel-port'], e['interface']]);
  if (out.all[udid].length !== entries.length) throw new Error(`malformed entry under ${udid}`);
  const first = entries.find(entryOK);
  if (first) out.first[udid] = `[${first['tunnel-address']}]:${first['tunnel-port']}`;
}

const hello = await get(port, '/hello');
out.hello = JSON.parse(hello.body).message;

const start = await get(port, `/start-tunnel?udid=${encodeURIComponent(startUdid)}`);
const st = JSON.parse(start.body);
if (start.status !== 200 || typeof st.interface !== 'string' || !Number.isInteger(st.port) || typeof st.address !== 'string') {
  throw new Error(`start-tunnel answered ${start.status} ${start.body}`);
}
out.start = [st.interface, st.port, st.address];

const bad = await get(port, '/start-tunnel?udid=nope');
out.startUnknown = [bad.status, JSON.parse(bad.body).error.exception];

process.stdout.write(JSON.stringify(out));
