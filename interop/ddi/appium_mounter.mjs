// Mounts a personalized DDI with appium-ios-remotexpc's own
// MobileImageMounterService (src/services/ios/mobile-image-mounter), over
// RSD: the mounter's port comes from appium's RSD discovery of HOST
// RSDPORT; only the address lookup (normally its tunnel registry) is
// replaced. The device must already keep a manifest for the image (appium
// would otherwise ask Apple's TSS).
// Usage: node appium_mounter.mjs <udid> <host> <rsdPort> <ddi folder>
// Prints {before, devMode, after, mountPaths} as JSON.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, '..', 'node_modules', 'appium-ios-remotexpc', 'build', 'src');
const load = (p) => import(pathToFileURL(path.join(src, p)).href);
const { discoverServices } = await load('lib/tunnel/tunnel-rsd-discovery.js');
const { MobileImageMounterService } = await load('services/ios/mobile-image-mounter/index.js');

const [udid, host, rsdPort, dir] = process.argv.slice(2);
try {
  const services = await discoverServices(udid, host, Number(rsdPort));
  const entry = services.find((s) => s.serviceName === MobileImageMounterService.RSD_SERVICE_NAME);
  if (!entry) throw new Error('the RSD lists no mobile_image_mounter');
  class Direct extends MobileImageMounterService {
    async resolveServiceAddress() { return [host, Number(entry.port)]; }
  }
  const m = new Direct(udid);
  const hex = (list) => list.map((b) => b.toString('hex'));
  const out = {};
  out.before = hex(await m.lookup());
  out.devMode = await m.queryDeveloperModeStatus();
  await m.mount(path.join(dir, 'Image.dmg'), path.join(dir, 'BuildManifest.plist'), path.join(dir, 'Image.dmg.trustcache'));
  out.after = hex(await m.lookup());
  out.mountPaths = (await m.copyDevices()).map((e) => e.MountPath);
  await m.cleanup();
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
} catch (err) {
  console.error(`appium mounter failed: ${err?.stack ?? err}`);
  process.exit(1);
}
