// Reads iosmux's appium tunnel registry with appium-ios-remotexpc's own
// client code: TunnelApiClient (src/lib/tunnel/tunnel-api-client.ts) against
// the base URL, and getTunnelForDevice (exported by the package), which finds
// the registry port through the appium strongbox file (XDG_DATA_HOME points
// at a test directory) and TCP-probes it first.
// Usage: node appium_client.mjs <port> <udid> <deviceId>
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { strongbox, BaseItem } from '@appium/strongbox';

// The package exports only its root, whose import waits ~15 s on unrelated
// modules; load the two tunnel modules by path instead.
const here = path.dirname(fileURLToPath(import.meta.url));
const tunnelDir = path.join(here, '..', 'node_modules', 'appium-ios-remotexpc', 'build', 'src', 'lib', 'tunnel');
const { TunnelApiClient } = await import(pathToFileURL(path.join(tunnelDir, 'tunnel-api-client.js')).href);
const { getTunnelForDevice } = await import(pathToFileURL(path.join(tunnelDir, 'tunnel-availability.js')).href);

const [port, udid, deviceId] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4])];
const client = new TunnelApiClient(`http://127.0.0.1:${port}/remotexpc/tunnels`, { strict: true });
const out = {};
out.devices = await client.getAvailableDevices();
out.all = (await client.getAllTunnels()).map((t) => [t.udid, t.address, t.rsdPort, t.deviceId, Object.keys(t.services)]);
out.metadata = await client.getMetadata();
out.byUdid = await client.getTunnelByUdid(udid);
out.byDevice = (await client.getTunnelByDeviceId(deviceId))?.udid ?? null;
out.connection = await client.getTunnelConnection(udid);
out.missing = await client.getTunnelByUdid('0000-NOPE');
out.hasMissing = await client.hasTunnel('0000-NOPE');
out.longPollMissing = await client.getTunnelByUdid('0000-NOPE', { waitMs: 50 });

const box = strongbox('appium-xcuitest-driver');
await new BaseItem('tunnelRegistryPort', box).write(String(port));
out.endpoint = await getTunnelForDevice(udid);
process.stdout.write(JSON.stringify(out));
