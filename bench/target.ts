/**
 * The TCP service behind every benchmark row, as its own process (forked by
 * bench/cli.ts, port reported over IPC). The first byte a connection sends
 * picks what it is:
 *
 * - `E`: echo every following byte back;
 * - `S`: sink: hash every following byte; at the client's end, answer the
 *   32-byte SHA-256 and end;
 * - `D` + 8-byte big-endian length: send that many bytes of the pattern, end;
 * - `R`: request/response: after every whole 1,024-byte request, answer 1,024
 *   bytes in two writes (16-byte header, then the body), as a debug adapter does.
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { writePattern } from './pattern';

function onConnection(sock: net.Socket): void {
  sock.setNoDelay(true);
  sock.on('error', () => undefined);
  let head: Buffer = Buffer.alloc(0);
  const onData = (d: Buffer): void => {
    head = head.length === 0 ? d : Buffer.concat([head, d]);
    const mode = String.fromCharCode(head[0]!);
    if (mode === 'E') {
      sock.off('data', onData);
      if (head.length > 1) sock.write(head.subarray(1));
      sock.pipe(sock);
    } else if (mode === 'S') {
      sock.off('data', onData);
      const h = createHash('sha256');
      h.update(head.subarray(1));
      sock.on('data', (c: Buffer) => h.update(c));
      sock.once('end', () => sock.end(h.digest()));
    } else if (mode === 'D') {
      if (head.length < 9) return;
      sock.off('data', onData);
      const n = Number(head.readBigUInt64BE(1));
      sock.resume();
      writePattern(sock, n).then(
        () => sock.end(),
        () => sock.destroy(),
      );
    } else if (mode === 'R') {
      sock.off('data', onData);
      let pending = head.length - 1;
      const answer = (): void => {
        while (pending >= 1024) {
          pending -= 1024;
          sock.write(Buffer.alloc(16, 104));
          sock.write(Buffer.alloc(1008, 98));
        }
      };
      answer();
      sock.on('data', (c: Buffer) => {
        pending += c.length;
        answer();
      });
    } else {
      sock.destroy();
    }
  };
  sock.on('data', onData);
}

const server = net.createServer({ noDelay: true }, onConnection);
server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as net.AddressInfo).port });
});
process.on('disconnect', () => process.exit(0));
