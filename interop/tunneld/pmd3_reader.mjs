// A reader of pymobiledevice3's tunneld JSON (tunneld-api.md §1.3–§1.4),
// reading GET / the way its consumers do and then doing what they do next:
//   - jkcoxson/idevice tunneld.rs: its own HTTP/1.1 client ("Connection:
//     close", Content-Length or chunked), a JSON object, the first entry of
//     each UDID;
//   - pymobiledevice3 tunneld/api.py: an RSD connection to every entry's
//     (tunnel-address, tunnel-port). The RSD client here is
//     appium-ios-remotexpc's (RsdServiceCatalogClient through
//     discoverServices), an implementation independent of ours.
// Usage: node pmd3_reader.mjs <port>
// Prints {"raw": <body>, "contentType": …, "devices": {udid: {"first": "[addr]:port",
// "entries": n, "services": n, "lockdown": port}}}; exits non-zero on any error.
import { get } from '../lib/http1.mjs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const tunnelDir = path.join(here, '..', 'node_modules', 'appium-ios-remotexpc', 'build', 'src', 'lib', 'tunnel');
const { discoverServices } = await import(pathToFileURL(path.join(tunnelDir, 'tunnel-rsd-discovery.js')).href);

const port = Number(process.argv[2]);
const res = await get(port, '/');
if (res.status !== 200) throw new Error(`GET / = ${res.status}`);
const listing = JSON.parse(res.body);
if (typeof listing !== 'object' || listing === null || Array.isArray(listing)) throw new Error('not a JSON object');
const devices = {};
for (const [udid, entries] of Object.entries(listing)) {
  if (!Array.isArray(entries) || entries.length === 0) throw new Error(`${udid}: no entries`);
  for (const e of entries) {
    if (typeof e['tunnel-address'] !== 'string' || !Number.isInteger(e['tunnel-port']) || e['tunnel-port'] > 65535 || typeof e.interface !== 'string') {
      throw new Error(`${udid}: bad entry ${JSON.stringify(e)}`);
    }
  }
  const first = entries[0];
  const services = await discoverServices(udid, first['tunnel-address'], first['tunnel-port']);
  const lockdown = services.find((s) => s.serviceName === 'com.apple.mobile.lockdown.remote.trusted');
  devices[udid] = {
    first: `[${first['tunnel-address']}]:${first['tunnel-port']}`,
    entries: entries.length,
    services: services.length,
    lockdown: lockdown ? Number(lockdown.port) : 0,
  };
}
process.stdout.write(JSON.stringify({ raw: res.body, contentType: res.headers['content-type'], devices }));
process.exit(0);
