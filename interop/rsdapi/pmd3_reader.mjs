// A reader of pymobiledevice3's tunneld JSON, written from the spec
// (tunneld-api.md §1.3–§1.4) the way its two consumers read it:
//   - jkcoxson/idevice tunneld.rs: its own HTTP/1.1 client ("Connection:
//     close", Content-Length or chunked body), requires a JSON object, takes
//     the first entry per UDID, skips entries that do not parse;
//   - pymobiledevice3 tunneld/api.py: every entry of every UDID, the
//     (tunnel-address, tunnel-port) pair an RSD connection is opened to.
// Usage: node pmd3_reader.mjs <port> <udid-for-start-tunnel>
// Prints one JSON document with what it read; exits non-zero on any shape
// error.
import net from 'node:net';

function get(port, path) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port }, () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\nAccept: */*\r\n\r\n`);
    });
    const chunks = [];
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('end', () => {
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    });
  });
}

function parseResponse(buf) {
  const sep = buf.indexOf('\r\n\r\n');
  if (sep < 0) throw new Error('no header terminator');
  const lines = buf.subarray(0, sep).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
  if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = buf.subarray(sep + 4);
  if ((headers['transfer-encoding'] || '').toLowerCase() === 'chunked') {
    const out = [];
    for (;;) {
      const e = body.indexOf('\r\n');
      const n = parseInt(body.subarray(0, e).toString(), 16);
      if (n === 0) break;
      out.push(body.subarray(e + 2, e + 2 + n));
      body = body.subarray(e + 2 + n + 2);
    }
    body = Buffer.concat(out);
  } else if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (body.length !== n) throw new Error(`body is ${body.length} bytes, Content-Length says ${n}`);
  } else {
    throw new Error('neither Content-Length nor chunked');
  }
  return { status: Number(m[1]), headers, body: body.toString('utf8') };
}

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
