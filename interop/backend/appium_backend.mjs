// Drives appium-ios-remotexpc against an iosmux backend and prints what it
// got as JSON; exits non-zero on any failure.
//
//   node appium_backend.mjs handshake HOST PORT
//     appium's RSD discovery (discoverServices, its public API) and, with
//     its RemoteXPC transport (the one discoverServices uses inside), the
//     whole Handshake body: {discovered, uuid, properties, services}
//   node appium_backend.mjs shim HOST PORT
//     appium's ServiceConnection on a lockdown shim port: RSDCheckin (both
//     replies), then GetValue UniqueDeviceID: {checkin, startService, udid}
//
// The transport and ServiceConnection are not in the package's exports map,
// so they are imported by file.
import { discoverServices } from 'appium-ios-remotexpc';
import { RemoteXpcFramedTransport } from '../node_modules/appium-ios-remotexpc/build/src/lib/remote-xpc/remote-xpc-framed-transport.js';
import { ServiceConnection } from '../node_modules/appium-ios-remotexpc/build/src/service-connection.js';

// JSON for what appium's decoder returns: bigints (integers beyond 2^53)
// as decimal strings, Buffers as hex, everything else as is.
function replacer(_key, value) {
  if (typeof value === 'bigint') {
    return value.toString();
  }
  if (value && value.type === 'Buffer' && Array.isArray(value.data)) {
    return Buffer.from(value.data).toString('hex');
  }
  return value;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function handshake(host, port) {
  const discovered = await discoverServices('iosmux-backend-interop', host, port);
  const transport = new RemoteXpcFramedTransport([host, port]);
  const body = await withTimeout(new Promise((resolve, reject) => {
    transport.on('message', (b) => {
      if (b && b.MessageType === 'Handshake') {
        resolve(b);
      }
    });
    transport.once('error', reject);
    transport.connect({ timeoutMs: 10000 }).catch(reject);
  }), 20000, 'Handshake');
  await transport.close();
  const services = {};
  for (const [name, entry] of Object.entries(body.Services)) {
    services[name] = entry.Port;
  }
  return {
    discovered: discovered.map((s) => ({ serviceName: s.serviceName, port: String(s.port) })),
    uuid: body.UUID,
    properties: body.Properties,
    services,
  };
}

async function shim(host, port) {
  const conn = await ServiceConnection.createUsingTCP(host, String(port));
  try {
    const checkin = await conn.sendPlistRequest({ Label: 'appium-internal', ProtocolVersion: '2', Request: 'RSDCheckin' });
    const start = await conn.receive(10000);
    const value = await conn.sendPlistRequest({ Label: 'appium-internal', Request: 'GetValue', Key: 'UniqueDeviceID' });
    return { checkin: checkin.Request, startService: start.Request, udid: value.Value };
  } finally {
    conn.close();
  }
}

const [mode, host, port] = process.argv.slice(2);
try {
  let out;
  if (mode === 'handshake') {
    out = await handshake(host, Number(port));
  } else if (mode === 'shim') {
    out = await shim(host, Number(port));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  process.stdout.write(JSON.stringify(out, replacer));
  process.exit(0);
} catch (err) {
  console.error(`appium ${mode} failed: ${err?.stack ?? err}`);
  process.exit(1);
}
