// Drives appium-ios-remotexpc's own AppService and CoreDeviceInfoService
// (src/services/ios/app-service, device-info) over RSD: the services'
// ports come from appium's RSD discovery of HOST RSDPORT; only the address
// lookup (normally its tunnel registry) is replaced.
//
//   node appium_appservice.mjs acceptance <udid> <host> <rsdPort> <bundleId>
//     list apps, launch the app, list processes, send it SIGSTOP, then
//     SIGTERM, list processes again, device and display info; prints what
//     appium parsed as JSON
//   node appium_appservice.mjs bench <udid> <host> <rsdPort> <bundleId> <n>
//     n launches (terminate-existing), each timed from the call to appium's
//     parsed reply; prints {ns: [...]}
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, '..', 'node_modules', 'appium-ios-remotexpc', 'build', 'src');
const load = (p) => import(pathToFileURL(path.join(src, p)).href);
const { discoverServices } = await load('lib/tunnel/tunnel-rsd-discovery.js');
const { AppService } = await load('services/ios/app-service/index.js');
const { CoreDeviceInfoService } = await load('services/ios/device-info/index.js');

// JSON for appium's values: bigints as decimal strings, Buffers as hex.
function replacer(_key, value) {
  if (typeof value === 'bigint') {
    return value.toString();
  }
  if (value && value.type === 'Buffer' && Array.isArray(value.data)) {
    return Buffer.from(value.data).toString('hex');
  }
  return value;
}

function direct(Base, host, port) {
  return class extends Base {
    async resolveServiceAddress() { return [host, Number(port)]; }
  };
}

const [mode, udid, host, rsdPort, bundleId, n] = process.argv.slice(2);
try {
  const services = await discoverServices(udid, host, Number(rsdPort));
  const port = (name) => {
    const e = services.find((s) => s.serviceName === name);
    if (!e) throw new Error(`the RSD lists no ${name}`);
    return e.port;
  };
  const App = direct(AppService, host, port(AppService.RSD_SERVICE_NAME));
  const apps = new App(udid);
  const out = {};
  if (mode === 'bench') {
    out.ns = [];
    for (let i = 0; i < Number(n); i++) {
      const t0 = process.hrtime.bigint();
      const p = await apps.launchApplication(bundleId, { terminateExisting: true });
      out.ns.push(Number(process.hrtime.bigint() - t0));
      out.pid = p.processIdentifier;
    }
  } else {
    out.apps = await apps.listApps();
    out.launched = await apps.launchApplication(bundleId, { terminateExisting: true });
    const pid = out.launched.processIdentifier;
    out.processes = await apps.listProcesses();
    out.stop = await apps.sendSignalToProcess(pid, 17); // Darwin SIGSTOP
    out.afterStop = await apps.listProcesses();
    out.term = await apps.sendSignalToProcess(pid, 15);
    out.afterTerm = await apps.listProcesses();
    try {
      await apps.sendSignalToProcess(pid, 15);
      out.deadSignal = 'accepted';
    } catch (err) {
      out.deadSignal = String(err?.message ?? err);
    }
    try {
      await apps.launchApplication('com.example.not.installed');
      out.missing = 'launched';
    } catch (err) {
      out.missing = String(err?.message ?? err);
    }
    const Info = direct(CoreDeviceInfoService, host, port(CoreDeviceInfoService.RSD_SERVICE_NAME));
    const info = new Info(udid);
    out.deviceInfo = await info.getDeviceInfo();
    out.displayInfo = await info.getDisplayInfo();
    await info.close();
  }
  await apps.close();
  process.stdout.write(JSON.stringify(out, replacer));
  process.exit(0);
} catch (err) {
  console.error(`appium appservice failed: ${err?.stack ?? err}`);
  process.exit(1);
}
