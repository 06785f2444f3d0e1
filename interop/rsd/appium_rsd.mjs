// Runs appium-ios-remotexpc's RSD discovery (discoverServices, which drives
// its RsdServiceCatalogClient) against HOST PORT and prints the services it
// read as JSON: [{serviceName, port}, ...]. Exits non-zero on any failure.
import { discoverServices } from 'appium-ios-remotexpc';

const [host, port] = process.argv.slice(2);
try {
  const services = await discoverServices('iosmux-interop', host, Number(port));
  process.stdout.write(JSON.stringify(services.map((s) => ({ serviceName: s.serviceName, port: String(s.port) }))));
  process.exit(0);
} catch (err) {
  console.error(`appium discoverServices failed: ${err?.stack ?? err}`);
  process.exit(1);
}
