// Streams a device's log with appium-ios-remotexpc's own SyslogService
// (src/services/ios/syslog-service) over RSD and prints what it emits, one
// JSON line each, until killed:
//   text  — syslog_relay in text mode: each 'message' (a line as sent)
//   trace — os_trace_relay: each 'syslogEntry' (a decoded record)
// The service's port comes from appium's RSD discovery of HOST RSDPORT;
// only the address lookup (normally its tunnel registry) is replaced.
// Usage: node appium_syslog.mjs <udid> <host> <rsdPort> text|trace
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, '..', 'node_modules', 'appium-ios-remotexpc', 'build', 'src');
const load = (p) => import(pathToFileURL(path.join(src, p)).href);
const { discoverServices } = await load('lib/tunnel/tunnel-rsd-discovery.js');
const { default: SyslogService } = await load('services/ios/syslog-service/index.js');

const [udid, host, rsdPort, mode] = process.argv.slice(2);
const name = mode === 'text' ? 'com.apple.syslog_relay.shim.remote' : 'com.apple.os_trace_relay.shim.remote';
try {
  const services = await discoverServices(udid, host, Number(rsdPort));
  const entry = services.find((s) => s.serviceName === name);
  if (!entry) throw new Error(`the RSD lists no ${name}`);
  const svc = new SyslogService(udid);
  svc.baseService.resolveServiceAddress = async () => [host, Number(entry.port)];
  if (mode === 'text') {
    svc.on('message', (line) => process.stdout.write(JSON.stringify(line) + '\n'));
  } else {
    svc.on('syslogEntry', (e) => process.stdout.write(JSON.stringify({
      pid: e.pid, seconds: e.timestampSeconds, micros: e.timestampMicroseconds, level: e.level,
      filename: e.filename, imageName: e.imageName, message: e.message, label: e.label ?? null,
    }) + '\n'));
  }
  await svc.start({ serviceName: name, port: String(entry.port) }, { textMode: mode === 'text' });
  process.stderr.write('started\n');
} catch (err) {
  console.error(`appium syslog failed: ${err?.stack ?? err}`);
  process.exit(1);
}
