// Runs appium-ios-remotexpc's RSD discovery (discoverServices, which drives
// its RsdServiceCatalogClient) against HOST PORT and prints the services it
// read as JSON: [{serviceName, port}, ...]. Exits non-zero on any failure.
import { discoverServices } from 'appium-ios-remotexpc';

const [udid, host, port] = process.argv.slice(2);
try {
  const services = await discoverServices(udid, host, Number(port));
  process.stdout.write(JSON.stringify(services.map((s) => ({ serviceName: s.serviceName, port: String(s.port) }))));
  process.exit(0);
} catch (err) {
  console.error(`appium discoverServices failed: ${err?.stack ?? err}`);
  process.exit(1);
}
