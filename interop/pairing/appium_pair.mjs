// Runs appium-ios-remotexpc's network pairing client against HOST PORT:
// AppleTVPairingService.pairWithDevice (RPPairing over TCP, pair-setup with
// the PIN read as one line from stdin), then AppleTVTunnelService's
// attemptDeviceConnection with the record it stored (handshake, pair-verify,
// createListener, connect to the listener port). Prints one JSON object:
// {deviceId, pairingFile, verified, psk (base64)}. Exits non-zero on failure.
import { createInterface } from 'node:readline';
import { AppleTVPairingService, AppleTVTunnelService } from 'appium-ios-remotexpc';

const [host, port] = process.argv.slice(2);

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const userInput = {
  async promptForPIN() {
    const { value, done } = await lines.next();
    if (done) throw new Error('no PIN on stdin');
    return value.trim();
  },
  async promptForInput() {
    return '';
  },
};

const device = {
  name: 'iosmux simulated device',
  identifier: 'iosmux-sim',
  hostname: host,
  ip: host,
  port: Number(port),
  model: 'AppleTV14,1',
  version: '26.0',
};

try {
  const pairing = new AppleTVPairingService(userInput);
  const { deviceId, pairingFile } = await pairing.pairWithDevice(device);

  const tunnel = new AppleTVTunnelService();
  const record = await tunnel.storage.load(deviceId);
  if (!record) throw new Error(`no stored record for ${deviceId}`);
  const failed = [];
  const conn = await tunnel.attemptDeviceConnection(device, deviceId, record, failed);
  if (!conn) throw new Error(`pair-verify/createListener failed: ${JSON.stringify(failed)}`);
  conn.tcpSocket.destroy();
  tunnel.networkClient.disconnect();
  process.stdout.write(JSON.stringify({ deviceId, pairingFile, verified: true, psk: conn.psk.toString('base64') }));
  process.exit(0);
} catch (err) {
  console.error(`appium pairing failed: ${err?.stack ?? err}`);
  if (err?.cause) console.error(`cause: ${err.cause?.stack ?? err.cause}`);
  process.exit(1);
}
