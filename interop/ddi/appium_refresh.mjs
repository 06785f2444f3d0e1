// Asks iosmux tunneld's appium registry to refresh a device's service
// catalog with appium-ios-remotexpc's own TunnelApiClient
// (refreshServiceCatalog, what its resolver calls when a service is missing
// after a DDI mount) and prints the service names of the entry it returns.
// Usage: node appium_refresh.mjs <port> <udid>
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const tunnelDir = path.join(here, '..', 'node_modules', 'appium-ios-remotexpc', 'build', 'src', 'lib', 'tunnel');
const { TunnelApiClient } = await import(pathToFileURL(path.join(tunnelDir, 'tunnel-api-client.js')).href);

const [port, udid] = [Number(process.argv[2]), process.argv[3]];
try {
  const client = new TunnelApiClient(`http://127.0.0.1:${port}/remotexpc/tunnels`, { strict: true });
  const entry = await client.refreshServiceCatalog(udid);
  process.stdout.write(JSON.stringify(Object.keys(entry?.services ?? {})));
  process.exit(0);
} catch (err) {
  console.error(`appium refresh-services failed: ${err?.stack ?? err}`);
  process.exit(1);
}
