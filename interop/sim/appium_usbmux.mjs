// Lists devices with appium-ios-remotexpc's usbmux client (createUsbmux,
// listDevices); the socket comes from USBMUXD_SOCKET_ADDRESS. Prints
// [{deviceID, serialNumber, connectionType}, ...] as JSON.
import { createUsbmux } from 'appium-ios-remotexpc';

try {
  const usbmux = await createUsbmux();
  const devices = await usbmux.listDevices();
  await usbmux.close();
  process.stdout.write(JSON.stringify(devices.map((d) => ({
    deviceID: d.DeviceID,
    serialNumber: d.Properties.SerialNumber,
    connectionType: d.Properties.ConnectionType,
  }))));
  process.exit(0);
} catch (err) {
  console.error(`appium usbmux failed: ${err?.stack ?? err}`);
  process.exit(1);
}
