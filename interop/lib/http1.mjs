// A minimal HTTP/1.1 GET over a raw socket, the way jkcoxson/idevice's
// tunneld client talks to a tunneld ("Connection: close", then a
// Content-Length or chunked body), shared by the interop readers of
// pymobiledevice3's tunneld JSON. Independent of Node's http module so the
// bytes on the wire are exactly these.
import net from 'node:net';

// get fetches path from 127.0.0.1:port; resolves {status, headers, body}.
export function get(port, path) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port }, () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\nAccept: */*\r\n\r\n`);
    });
    const chunks = [];
    sock.setTimeout(30000, () => sock.destroy(new Error(`GET ${path}: no answer in 30 s`)));
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('end', () => {
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    });
  });
}

// parseResponse reads a whole response: status line, headers, and a body
// framed by Content-Length or chunked encoding (either is required).
export function parseResponse(buf) {
  const sep = buf.indexOf('\r\n\r\n');
  if (sep < 0) throw new Error('no header terminator');
  const lines = buf.subarray(0, sep).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
  if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i <= 0) throw new Error(`bad header line ${JSON.stringify(l)}`);
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = buf.subarray(sep + 4);
  if ((headers['transfer-encoding'] || '').toLowerCase() === 'chunked') {
    const out = [];
    for (;;) {
      const e = body.indexOf('\r\n');
      const n = e < 0 ? NaN : parseInt(body.subarray(0, e).toString(), 16);
      if (Number.isNaN(n) || body.length < e + 2 + n + 2) throw new Error('bad chunked body');
      if (n === 0) break;
      out.push(body.subarray(e + 2, e + 2 + n));
      body = body.subarray(e + 2 + n + 2);
    }
    body = Buffer.concat(out);
  } else if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (body.length !== n) throw new Error(`body is ${body.length} bytes, Content-Length says ${n}`);
  } else {
    throw new Error('neither Content-Length nor chunked');
  }
  return { status: Number(m[1]), headers, body: body.toString('utf8') };
}
