/**
 * A minimal Chrome DevTools Protocol client for tests: one WebSocket
 * (RFC 6455, text frames) kept open, so a test can send several commands
 * over the same TCP connection (a debugger session that must survive
 * something in between).
 */
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { once } from 'node:events';
import * as http from 'node:http';
import type * as net from 'node:net';

export class CdpSession {
  private buf = Buffer.alloc(0);
  private nextId = 1;
  private waiting = new Map<number, (reply: Record<string, unknown>) => void>();
  /** Set when the TCP connection failed (for example ECONNRESET) or closed. */
  failure?: Error;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (err) => (this.failure = err));
    socket.on('close', () => {
      this.closed = true;
      for (const cb of this.waiting.values()) cb({ error: this.failure ?? new Error('closed') });
      this.waiting.clear();
    });
  }

  /** Open a session on a target's webSocketDebuggerUrl. */
  static async open(url: string): Promise<CdpSession> {
    const u = new URL(url);
    const key = crypto.randomBytes(16).toString('base64');
    const req = http.request({
      host: u.hostname,
      port: Number(u.port),
      path: u.pathname,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': key, 'Sec-WebSocket-Version': '13' },
    });
    req.end();
    const [res, socket, head] = (await once(req, 'upgrade')) as [http.IncomingMessage, net.Socket, Buffer];
    assert.equal(res.statusCode, 101);
    const s = new CdpSession(socket);
    if (head.length > 0) s.onData(head);
    return s;
  }

  /** Send a command; resolves with its reply (the message with the same id). */
  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    const payload = Buffer.from(JSON.stringify({ id, method, params }));
    const mask = crypto.randomBytes(4);
    const header =
      payload.length < 126
        ? Buffer.from([0x81, 0x80 | payload.length])
        : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.socket.write(Buffer.concat([header, mask, masked]));
    });
  }

  /** Runtime.evaluate of `expression`: its value. */
  async evaluate(expression: string): Promise<unknown> {
    const reply = (await this.send('Runtime.evaluate', { expression })) as { result?: { result?: { value?: unknown } }; error?: unknown };
    if (reply.error) throw reply.error instanceof Error ? reply.error : new Error(JSON.stringify(reply.error));
    return reply.result?.result?.value;
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 2) {
      let len = this.buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      if (this.buf.length < off + len) return;
      const opcode = this.buf[0]! & 0x0f;
      const text = this.buf.subarray(off, off + len).toString();
      this.buf = this.buf.subarray(off + len);
      if (opcode !== 1) continue;
      const msg = JSON.parse(text) as Record<string, unknown>;
      const cb = typeof msg.id === 'number' ? this.waiting.get(msg.id) : undefined;
      if (cb) {
        this.waiting.delete(msg.id as number);
        cb(msg);
      }
    }
  }
}
