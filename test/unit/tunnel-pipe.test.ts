import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import { Duplex } from 'node:stream';
import { TunnelError } from '../../src/common/errors';
import { pipe, resetSocket } from '../../src/tunnel/pipe';

/** One end of an in-memory stream pair that behaves like a StreamSocket: half-close, reset on abort. */
class MemEnd extends Duplex {
  peer!: MemEnd;
  constructor() {
    super({ allowHalfOpen: true });
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.peer.destroyed) return cb(new TunnelError('EPIPE', 'peer gone'));
    this.peer.push(chunk);
    cb();
  }
  override _final(cb: (err?: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.push(null);
    cb();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const clean = this.writableFinished && this.readableEnded;
    if (!this.peer.destroyed && (err || !clean)) {
      const reason = err ? err.message : 'destroyed';
      process.nextTick(() => this.peer.destroy(new TunnelError('ECONNRESET', `the peer reset the stream: ${reason}`)));
    }
    cb(err);
  }
}

function memPair(): [MemEnd, MemEnd] {
  const a = new MemEnd();
  const b = new MemEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** A connected TCP pair on 127.0.0.1 (port 0): [client, accepted]. */
async function tcpPair(): Promise<[net.Socket, net.Socket, () => void]> {
  const server = net.createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection');
  const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const [serverSide] = (await accepted) as [net.Socket];
  await (client.connecting ? once(client, 'connect') : Promise.resolve());
  return [client, serverSide, () => server.close()];
}

function counter(emitter: NodeJS.EventEmitter, events: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const e of events) {
    counts[e] = 0;
    emitter.on(e, () => counts[e]!++);
  }
  return counts;
}

async function readAll(s: Duplex): Promise<string> {
  let text = '';
  s.on('data', (c: Buffer) => (text += c.toString()));
  await once(s, 'end');
  return text;
}

describe('pipe between a TCP socket and a stream', () => {
  let cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const fn of cleanup) fn();
    cleanup = [];
  });

  it('copies bytes both ways, reports the counts, and closes each end exactly once', async () => {
    const [client, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    const [streamEnd, remote] = memPair();
    const tcpCounts = counter(tcpEnd, ['end', 'finish', 'close']);
    const streamCounts = counter(streamEnd, ['end', 'finish', 'close']);
    const p = pipe(tcpEnd, streamEnd);
    remote.on('data', (c: Buffer) => remote.write(c.toString().toUpperCase()));
    remote.on('end', () => remote.end());
    const got = readAll(client);
    client.end('hello tunnel');
    assert.equal(await got, 'HELLO TUNNEL');
    const r = await p.done;
    assert.equal(r.error, undefined);
    assert.equal(r.tcpToStream, 12);
    assert.equal(r.streamToTcp, 12);
    await new Promise((res) => setImmediate(res));
    assert.deepEqual(tcpCounts, { end: 1, finish: 1, close: 1 });
    assert.deepEqual(streamCounts, { end: 1, finish: 1, close: 1 });
  });

  it('passes a half-close from TCP to the stream and keeps the other direction open', async () => {
    const [client, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    const [streamEnd, remote] = memPair();
    const p = pipe(tcpEnd, streamEnd);
    const remoteGot = readAll(remote);
    client.end('request');
    assert.equal(await remoteGot, 'request');
    // The TCP client half-closed; it can still receive.
    const clientGot = readAll(client);
    remote.write('late ');
    remote.end('reply');
    assert.equal(await clientGot, 'late reply');
    const r = await p.done;
    assert.equal(r.error, undefined);
  });

  it('passes a half-close from the stream to TCP as a FIN', async () => {
    const [client, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    const [streamEnd, remote] = memPair();
    const p = pipe(tcpEnd, streamEnd);
    const clientGot = readAll(client);
    remote.end('server done');
    assert.equal(await clientGot, 'server done');
    const remoteGot = readAll(remote);
    client.end('bye');
    assert.equal(await remoteGot, 'bye');
    assert.equal((await p.done).error, undefined);
  });

  it('resets the TCP connection (ECONNRESET, no clean end) when the stream is reset', async () => {
    const [client, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    const [streamEnd, remote] = memPair();
    const p = pipe(tcpEnd, streamEnd);
    let ended = false;
    client.on('end', () => (ended = true));
    remote.on('error', () => undefined);
    client.write('x');
    await once(remote, 'data');
    remote.destroy(new TunnelError('ECONNRESET', 'broker connection lost'));
    const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(ended, false);
    const r = await p.done;
    assert.equal(r.abortedBy, 'stream');
    assert.match(String(r.error?.message), /broker connection lost/);
    client.destroy();
  });

  it('resets the stream with a reason when the TCP side is reset', async () => {
    const [client, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    const [streamEnd, remote] = memPair();
    const p = pipe(tcpEnd, streamEnd);
    client.write('abc');
    await once(remote, 'data');
    client.resetAndDestroy();
    const [err] = (await once(remote, 'error')) as [TunnelError];
    assert.equal(err.code, 'ECONNRESET');
    const r = await p.done;
    assert.equal(r.abortedBy, 'tcp');
    assert.equal(r.tcpToStream, 3);
  });

  it('aborts both ends on abort(): RST to the TCP peer, reset to the stream peer', async () => {
    const [client, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    const [streamEnd, remote] = memPair();
    const p = pipe(tcpEnd, streamEnd);
    const clientErr = once(client, 'error');
    const remoteErr = once(remote, 'error');
    p.abort(new TunnelError('ECONNRESET', 'tunnel stopping'));
    assert.equal(((await clientErr) as [NodeJS.ErrnoException])[0].code, 'ECONNRESET');
    assert.match(((await remoteErr) as [Error])[0].message, /tunnel stopping/);
    await p.done;
  });

  it('on end(), ends the stream at once and gives TCP its FIN only after the rest of the stream data', async () => {
    const [client, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    const [streamEnd, remote] = memPair();
    const p = pipe(tcpEnd, streamEnd);
    const clientGot = readAll(client);
    const remoteEnd = once(remote.resume(), 'end');
    p.end();
    await remoteEnd;
    // The peer still had data on its way when the tunnel stopped: it arrives before the FIN.
    remote.write('the rest ');
    remote.end('of the data');
    assert.equal(await clientGot, 'the rest of the data');
    client.end();
    const r = await p.done;
    assert.equal(r.error, undefined);
    assert.equal(r.streamToTcp, 20);
  });

  it("on end(), resets TCP (never a clean end) when the stream's end does not come within the bound", async () => {
    const [client, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    const [streamEnd, remote] = memPair();
    remote.on('error', () => undefined);
    const p = pipe(tcpEnd, streamEnd);
    let ended = false;
    client.on('end', () => (ended = true));
    client.resume();
    p.end(50);
    const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(ended, false);
    assert.match(String((await p.done).error?.message), /did not close within 50 ms/);
  });

  it('keeps byte counts right under backpressure for a large transfer', async () => {
    const [client, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    const [streamEnd, remote] = memPair();
    const p = pipe(tcpEnd, streamEnd);
    let received = 0;
    remote.on('data', (c: Buffer) => (received += c.length));
    remote.on('end', () => remote.end());
    const chunk = Buffer.alloc(64 * 1024, 7);
    for (let i = 0; i < 64; i++) if (!client.write(chunk)) await once(client, 'drain');
    client.end();
    const r = await p.done;
    assert.equal(r.tcpToStream, 64 * 64 * 1024);
    assert.equal(received, 64 * 64 * 1024);
  });

  it('passes a request that arrives in two pieces on at once, not after the TCP peer\'s delayed ACK (Nagle off)', async () => {
    // A debug adapter writes a header and a body; the stream delivers them as
    // two messages; the service answers only once it has the whole request.
    // With Nagle on, the second piece waits for the ACK of the first, which
    // the service delays by ~40 ms because it has nothing to send yet.
    const [service, tcpEnd, close] = await tcpPair();
    cleanup.push(close);
    service.setNoDelay(true);
    const [streamEnd, remote] = memPair();
    const p = pipe(tcpEnd, streamEnd);
    let pending = 0;
    service.on('data', (d: Buffer) => {
      pending += d.length;
      if (pending >= 1000) {
        pending -= 1000;
        service.write('ok');
      }
    });
    const times: number[] = [];
    for (let i = 0; i < 9; i++) {
      const t = process.hrtime.bigint();
      const answered = once(remote, 'data');
      remote.write(Buffer.alloc(20, 1));
      await new Promise((resolve) => setImmediate(resolve));
      remote.write(Buffer.alloc(980, 2));
      await answered;
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    times.sort((a, b) => a - b);
    assert.ok(times[4]! < 25, `median request/answer time ${times[4]!.toFixed(1)} ms (a delayed ACK is ~40 ms)`);
    remote.end();
    service.end();
    await p.done;
  });
});

describe('resetSocket', () => {
  async function connectedPair(): Promise<{ client: net.Socket; accepted: net.Socket; close(): void }> {
    const server = net.createServer({ allowHalfOpen: true });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const [accepted] = (await once(server, 'connection')) as [net.Socket];
    await once(client, 'connect');
    client.on('error', () => undefined);
    accepted.on('error', () => undefined);
    return { client, accepted, close: () => server.close() };
  }

  it('sends an RST: the peer sees ECONNRESET, not a clean end', async () => {
    const { client, accepted, close } = await connectedPair();
    const failed = once(client, 'error').catch((e: unknown) => e);
    client.resume();
    resetSocket(accepted);
    const [err] = (await failed) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    close();
  });

  it('still closes a socket whose FIN is being sent (a raw reset there would never release the handle)', async () => {
    const { client, accepted, close } = await connectedPair();
    client.resume();
    accepted.end();
    const closed = once(accepted, 'close');
    resetSocket(accepted);
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('the socket never closed')), 2000).unref());
    await Promise.race([closed, timeout]);
    client.destroy();
    close();
  });
});
