// Drives appium-ios-remotexpc's own AfcService and InstallationProxyService
// against a device's RSD at HOST RSDPORT: ports come from appium's RSD
// discovery; only the address lookup (normally its tunnel registry) is
// replaced, by AfcService.fromSocket over appium's createRawServiceSocket
// (RSDCheckin included) and a resolveServiceAddress override.
//
// Usage: node appium_apps.mjs <udid> <host> <rsdPort> '<steps JSON>'
// Steps: [{op, …}] with op one of
//   push {local, remote}         AfcService.push (one file)
//   pushTree {local, remote}     every file below local, one push each (dirs by mkdir)
//   pull {remote, local}         AfcService.pull, recursive
//   stat {path} / ls {path} / mkdir {path} / rm {path}
//   install {remote}             InstallationProxyService.install of a staged package
//   apps {}                      getApps('User'): [[bundle id, CFBundleVersion]]
//   uninstall {id}
// Prints [{op, ok, ms, result | error}] as JSON; a failing step does not
// stop the others.
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, '..', 'node_modules', 'appium-ios-remotexpc', 'build', 'src');
const load = (p) => import(pathToFileURL(path.join(src, p)).href);
const { discoverServices } = await load('lib/tunnel/tunnel-rsd-discovery.js');
const { AfcService } = await load('services/ios/afc/index.js');
const { createRawServiceSocket } = await load('services/ios/afc/codec.js');
const { InstallationProxyService } = await load('services/ios/installation-proxy/index.js');

const [udid, host, rsdPort, stepsJSON] = process.argv.slice(2);
const steps = JSON.parse(stepsJSON);
const services = await discoverServices(udid, host, Number(rsdPort));
const port = (name) => {
  const e = services.find((s) => s.serviceName === name);
  if (!e) throw new Error(`the RSD lists no ${name}`);
  return Number(e.port);
};

let afc;
const getAfc = async () => {
  if (!afc) {
    afc = AfcService.fromSocket(await createRawServiceSocket(host, port(AfcService.RSD_SERVICE_NAME)), true);
  }
  return afc;
};
class Direct extends InstallationProxyService {
  async resolveServiceAddress(name) { return [host, port(name)]; }
}
let ip;
const getIP = () => (ip ??= new Direct(udid, 120000));

async function walkLocal(dir, rel = '') {
  const out = [];
  for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.posix.join(rel, e.name);
    if (e.isDirectory()) out.push({ dir: r }, ...(await walkLocal(dir, r)));
    else out.push({ file: r });
  }
  return out;
}

const results = [];
for (const s of steps) {
  const t0 = performance.now();
  try {
    let result = null;
    const a = await getAfc();
    switch (s.op) {
      case 'push': await a.push(s.local, s.remote); break;
      case 'pushTree':
        await a.mkdir(s.remote);
        for (const e of await walkLocal(s.local)) {
          if (e.dir) await a.mkdir(path.posix.join(s.remote, e.dir));
          else await a.push(path.join(s.local, e.file), path.posix.join(s.remote, e.file));
        }
        break;
      case 'pull': await a.pull(s.remote, s.local, { recursive: true }); break;
      case 'stat': result = { type: (await a.stat(s.path)).st_ifmt, size: String((await a.stat(s.path)).st_size) }; break;
      case 'ls': result = await a.listdir(s.path); break;
      case 'mkdir': await a.mkdir(s.path); break;
      case 'rm': result = await a.rm(s.path, true); break;
      case 'install': await getIP().install(s.remote, {}); break;
      case 'apps': {
        const apps = await getIP().getApps('User');
        result = Object.values(apps).map((x) => [x.CFBundleIdentifier, x.CFBundleVersion]).sort();
        break;
      }
      case 'uninstall': await getIP().uninstall(s.id, {}); break;
      default: throw new Error(`unknown op ${s.op}`);
    }
    results.push({ op: s.op, ok: true, ms: performance.now() - t0, result });
  } catch (err) {
    results.push({ op: s.op, ok: false, ms: performance.now() - t0, error: String(err?.message ?? err) });
  }
}
afc?.close();
ip?.close?.();
process.stdout.write(JSON.stringify(results));
process.exit(0);
