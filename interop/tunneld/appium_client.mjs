// Reads iosmux tunneld's appium registry with appium-ios-remotexpc's own
// TunnelApiClient (src/lib/tunnel/tunnel-api-client.ts), then reaches each
// device's RSD at the address the registry gave, with appium's RSD client
// (discoverServices), as appium's XCUITest driver does.
// Usage: node appium_client.mjs <port> <udid>
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const tunnelDir = path.join(here, '..', 'node_modules', 'appium-ios-remotexpc', 'build', 'src', 'lib', 'tunnel');
const { TunnelApiClient } = await import(pathToFileURL(path.join(tunnelDir, 'tunnel-api-client.js')).href);
const { discoverServices } = await import(pathToFileURL(path.join(tunnelDir, 'tunnel-rsd-discovery.js')).href);

const [port, udid] = [Number(process.argv[2]), process.argv[3]];
const client = new TunnelApiClient(`http://127.0.0.1:${port}/remotexpc/tunnels`, { strict: true });
const out = {};
out.devices = (await client.getAvailableDevices()).sort();
out.all = (await client.getAllTunnels()).map((t) => [t.udid, t.address, t.rsdPort, t.connectionType, Object.keys(t.services).length]);
out.metadata = await client.getMetadata();
const t = await client.getTunnelByUdid(udid, { waitMs: 5000 });
out.connection = await client.getTunnelConnection(udid);
const services = await discoverServices(udid, out.connection.host, out.connection.port);
out.rsdServices = services.length;
out.registryServices = Object.keys(t.services).length;
process.stdout.write(JSON.stringify(out));
process.exit(0);
