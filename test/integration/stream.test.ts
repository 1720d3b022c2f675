/**
 * The stream library against the real broker at AMQP_URL.
 */
import * as assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import * as amqp from 'amqplib';
import { connect, dial, listen, type Connection, type StreamServer, type StreamSocket } from '../../src/stream';
import { v1Dial, v1Listen, type V1Stream } from './v1peer';
import { AMQP_URL, brokerView, countEvents, digestAll, errorOf, queueExists, queueMessages, rabbitmqctl, readAll, uniqueQueue } from './support';

describe('stream library (real broker)', function () {
  let conn: Connection;
  const connectionName = uniqueQueue('conn');
  const cleanups: Array<() => Promise<unknown> | unknown> = [];

  before(async () => {
    conn = await connect(AMQP_URL, { connectionName });
  });
  after(() => conn.close());
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function serve(
    queue: string,
    onConnection: (s: StreamSocket) => void,
    on: Connection = conn,
    options: { allowHalfOpen?: boolean } = {},
  ): Promise<StreamServer> {
    const accepted: StreamSocket[] = [];
    const server = on.createServer(options, (s) => {
      accepted.push(s);
      onConnection(s);
    });
    server.listen(queue);
    await once(server, 'listening');
    cleanups.push(async () => {
      // A failed test may leave streams open; close() would wait for them.
      for (const s of accepted) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    });
    return server;
  }

  /** Listen on `queue`; `next` resolves with the first accepted socket. */
  async function serveOne(
    queue: string,
    onConnection: (s: StreamSocket) => void = () => undefined,
    options: { allowHalfOpen?: boolean } = {},
  ): Promise<{ next: Promise<StreamSocket> }> {
    let accept!: (s: StreamSocket) => void;
    const next = new Promise<StreamSocket>((r) => (accept = r));
    await serve(
      queue,
      (s) => {
        onConnection(s);
        accept(s);
      },
      conn,
      options,
    );
    return { next };
  }

  function echo(s: StreamSocket): void {
    s.pipe(s);
  }

  /** A v1 (Go library) listener on a fresh queue, closed after the test; `streams` fills as clients connect. */
  async function v1Peer(label: string): Promise<{ q: string; streams: V1Stream[] }> {
    const q = uniqueQueue(label);
    const raw = await amqp.connect(AMQP_URL);
    cleanups.push(() => raw.close());
    const streams: V1Stream[] = [];
    const l = await v1Listen(raw, q, (s) => streams.push(s));
    cleanups.push(() => l.close());
    return { q, streams };
  }

  it('echoes what a client writes, and both ends close cleanly', async () => {
    const q = uniqueQueue('echo');
    await serve(q, echo);
    const sock = conn.connect(q);
    await once(sock, 'connect');
    assert.equal(sock.protocolVersion, 2);
    assert.match(sock.localAddress!, /server_queue=.*local_queue=amq\.gen-.*remote_queue=amq\.gen-/);
    const got = readAll(sock);
    sock.write('hello, ');
    sock.end('broker');
    assert.equal((await got).toString(), 'hello, broker');
    if (!sock.destroyed) await once(sock, 'close');
    assert.equal(sock.bytesWritten, 13);
    assert.equal(sock.bytesRead, 13);
  });

  it("emits 'timeout' after setTimeout() ms without traffic, as net does, and keeps the stream open", async () => {
    const q = uniqueQueue('idle');
    await serve(q, echo);
    const sock = conn.connect(q);
    await once(sock, 'connect');
    let timeouts = 0;
    // Longer than the liveness interval: the peer's pings are not traffic and must not hold it off.
    sock.setTimeout(1200, () => timeouts++);
    // Traffic every 100 ms keeps it from firing...
    for (let i = 0; i < 5; i++) {
      sock.write('x');
      await once(sock, 'data');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(timeouts, 0);
    // ...silence makes it fire, and the stream still works afterwards.
    await once(sock, 'timeout');
    assert.equal(sock.destroyed, false);
    sock.write('still open');
    assert.equal(String((await once(sock, 'data'))[0]), 'still open');
    sock.setTimeout(0);
    sock.end();
    if (!sock.destroyed) await once(sock, 'close');
  });

  it('carries 256 MiB each direction with equal SHA-256 at both ends', async function () {
    this.timeout(300_000);
    const q = uniqueQueue('bulk');
    const total = 256 * 1024 * 1024;
    const block = randomBytes(1024 * 1024);
    const expected = createHash('sha256');
    for (let i = 0; i < total / block.length; i++) expected.update(block);
    const expectedSha = expected.digest('hex');

    async function pump(s: StreamSocket): Promise<void> {
      for (let sent = 0; sent < total; sent += block.length) {
        if (!s.write(block)) await once(s, 'drain');
      }
      s.end();
    }
    let serverDigest!: Promise<{ sha: string; bytes: number }>;
    // Half-open on both sides: each end sends all of its 256 MiB whenever the
    // other finishes first (without it the server's writable side ends when
    // the client's end arrives, as net.Socket's does, and its later writes fail).
    const { next } = await serveOne(
      q,
      (s) => {
        serverDigest = digestAll(s);
        void pump(s);
      },
      { allowHalfOpen: true },
    );
    const sock = conn.connect(q, { allowHalfOpen: true });
    const clientDigest = digestAll(sock);
    await pump(sock);
    await next;
    const [atServer, atClient] = await Promise.all([serverDigest, clientDigest]);
    assert.deepEqual(atServer, { sha: expectedSha, bytes: total });
    assert.deepEqual(atClient, { sha: expectedSha, bytes: total });
  });

  it('serves 200 concurrent streams on one connection, each with its own data', async function () {
    this.timeout(120_000);
    const q = uniqueQueue('many');
    await serve(q, echo);
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const payload = Buffer.concat([Buffer.from(`stream ${i}:`), randomBytes(1000 + i * 37)]);
        const s = conn.connect(q);
        const got = readAll(s);
        s.write(payload.subarray(0, 500));
        s.end(payload.subarray(500));
        return { payload, got: await got };
      }),
    );
    for (const r of results) assert.ok(r.got.equals(r.payload));
    const view = await brokerView(connectionName);
    assert.ok(view.channels <= 10, `one connection uses ${view.channels} channels for 200 streams`);
  });

  it('keeps the other direction flowing after the client half-closes, each event firing once', async () => {
    const q = uniqueQueue('half-client');
    const { next } = await serveOne(q, undefined, { allowHalfOpen: true });
    const sock = conn.connect(q, { allowHalfOpen: true });
    const clientEvents = countEvents(sock, ['end', 'finish', 'close']);
    sock.end('request');
    const serverSide = await next;
    const serverEvents = countEvents(serverSide, ['end', 'finish', 'close']);
    const serverGot = await readAll(serverSide); // the server sees the client's end...
    assert.equal(serverGot.toString(), 'request');
    const clientGot = readAll(sock);
    // ...and still writes its answer in several pieces after it.
    serverSide.write('res');
    await new Promise((r) => setTimeout(r, 20));
    serverSide.end('ponse');
    assert.equal((await clientGot).toString(), 'response');
    await Promise.all([sock.destroyed ? null : once(sock, 'close'), serverSide.destroyed ? null : once(serverSide, 'close')]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(clientEvents, { end: 1, finish: 1, close: 1 });
    assert.deepEqual(serverEvents, { end: 1, finish: 1, close: 1 });
  });

  it('keeps the other direction flowing after the server half-closes', async () => {
    const q = uniqueQueue('half-server');
    const { next } = await serveOne(q, (s) => s.end('banner'));
    const sock = conn.connect(q, { allowHalfOpen: true });
    const clientEvents = countEvents(sock, ['end', 'finish', 'close']);
    assert.equal((await readAll(sock)).toString(), 'banner');
    const serverSide = await next;
    const serverEvents = countEvents(serverSide, ['end', 'finish', 'close']);
    const serverGot = readAll(serverSide);
    sock.write('still ');
    sock.end('talking');
    assert.equal((await serverGot).toString(), 'still talking');
    await Promise.all([sock.destroyed ? null : once(sock, 'close'), serverSide.destroyed ? null : once(serverSide, 'close')]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(clientEvents, { end: 1, finish: 1, close: 1 });
    assert.deepEqual({ end: serverEvents.end, close: serverEvents.close }, { end: 1, close: 1 });
  });

  it('ends its writable side when the peer ends and allowHalfOpen is false (as net does)', async () => {
    const q = uniqueQueue('auto-end');
    await serve(q, (s) => s.end('bye'));
    const sock = conn.connect(q);
    const events = countEvents(sock, ['end', 'finish', 'close']);
    assert.equal((await readAll(sock)).toString(), 'bye');
    if (!sock.destroyed) await once(sock, 'close');
    assert.deepEqual(events, { end: 1, finish: 1, close: 1 });
  });

  it('reports destroy() mid-transfer to the peer as ECONNRESET, not a clean end', async () => {
    const q = uniqueQueue('reset');
    const { next } = await serveOne(q);
    const sock = conn.connect(q);
    sock.write(randomBytes(100_000));
    const serverSide = await next;
    const ended = countEvents(serverSide, ['end']);
    serverSide.resume();
    await once(serverSide, 'data');
    sock.destroy();
    const err = await errorOf(serverSide);
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(ended.end, 0, 'the peer must not see a clean end');
  });

  it('refuses a connection to a queue nobody listens on with ECONNREFUSED in under a second', async () => {
    const q = uniqueQueue('nobody');
    const started = Date.now();
    const sock = conn.connect(q);
    const err = await errorOf(sock);
    const took = Date.now() - started;
    assert.equal(err.code, 'ECONNREFUSED');
    assert.match(err.message, new RegExp(`no listener on queue '${q}'`));
    assert.ok(took < 1000, `took ${took} ms`);
  });

  it('gives a second listener on the same queue EADDRINUSE, from another connection and from the same one', async () => {
    const q = uniqueQueue('busy');
    await serve(q, echo);
    const other = await connect(AMQP_URL);
    cleanups.push(() => other.close());
    const second = other.createServer();
    second.listen(q);
    const err = await errorOf(second);
    assert.equal(err.code, 'EADDRINUSE');
    assert.match(err.message, /already in use/);
    const same = conn.listen(q);
    assert.equal((await errorOf(same)).code, 'EADDRINUSE');
    // The first listener still serves.
    const sock = conn.connect(q);
    const got = readAll(sock);
    sock.end('still here');
    assert.equal((await got).toString(), 'still here');
  });

  it('times out with ETIMEDOUT when a listener never answers the handshake', async () => {
    const q = uniqueQueue('mute');
    const raw = await amqp.connect(AMQP_URL);
    cleanups.push(() => raw.close());
    const ch = await raw.createChannel();
    await ch.assertQueue(q, { exclusive: true, autoDelete: true });
    await ch.consume(q, () => undefined, { noAck: true });
    const quick = await connect(AMQP_URL, { handshakeTimeout: 300 });
    cleanups.push(() => quick.close());
    const err = await errorOf(quick.connect(q));
    assert.equal(err.code, 'ETIMEDOUT');
    assert.match(err.message, new RegExp(`queue '${q}'.*did not answer`));
  });

  it('rejects malformed connection requests, logs one line per kind of problem, and keeps serving', async () => {
    const q = uniqueQueue('garbage');
    const warnings: string[] = [];
    const logged = await connect(AMQP_URL, {
      logger: { debug() {}, info() {}, error() {}, warn: (m) => warnings.push(m) },
    });
    cleanups.push(() => logged.close());
    await serve(q, echo, logged);
    const raw = await amqp.connect(AMQP_URL);
    cleanups.push(() => raw.close());
    const ch = await raw.createChannel();
    ch.sendToQueue(q, Buffer.from('not a handshake'), { replyTo: 'x' });
    ch.sendToQueue(q, Buffer.alloc(0));
    ch.sendToQueue(q, Buffer.alloc(0), { replyTo: '', headers: { junk: { deep: [1, 2, 3] } }, contentType: '\u0000' });
    const sock = logged.connect(q);
    const got = readAll(sock);
    sock.end('after garbage');
    assert.equal((await got).toString(), 'after garbage');
    // The garbage came over another connection, so it may be handled after our stream.
    const rejected = (): number => warnings.filter((w) => w.includes('rejected a malformed connection request')).length;
    await waitFor(async () => rejected() >= 2).catch(() => undefined);
    // Two kinds of problem (a body; no reply-to, twice): one line each, not one per message.
    const lines = warnings.filter((w) => w.includes('rejected a malformed connection request'));
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(lines.join('\n'), /15-byte body/);
    assert.match(lines.join('\n'), /no reply-to/);
    // Nothing is left unacknowledged on the control queue.
    assert.equal(await queueMessages(q), 0);
  });

  it('reports EPIPE for a write after the peer has closed', async () => {
    const q = uniqueQueue('epipe');
    await serve(q, (s) => {
      // End, then close without reading further (a server that hangs up).
      s.resume();
      s.end(() => s.destroy());
    });
    const sock = conn.connect(q, { allowHalfOpen: true });
    await once(sock, 'connect');
    sock.resume();
    await once(sock, 'end');
    // Wait until the server's queue is gone, then write.
    const remote = new URL(sock.remoteAddress!).searchParams.get('local_queue')!;
    await waitFor(async () => !(await queueExists(remote)));
    sock.write('into the void');
    const err = await errorOf(sock);
    assert.equal(err.code, 'EPIPE');
  });

  it('without credit (plain v2), stops taking messages from the broker while the reader is paused, and resumes', async function () {
    this.timeout(60_000);
    const q = uniqueQueue('slow');
    const small = await connect(AMQP_URL, { prefetch: 4, maxMessageSize: 16 * 1024, features: [] });
    cleanups.push(() => small.close());
    const total = 8 * 1024 * 1024;
    await serve(
      q,
      async (s) => {
        const block = Buffer.alloc(16 * 1024, 7);
        for (let sent = 0; sent < total; sent += block.length) if (!s.write(block)) await once(s, 'drain');
        s.end();
      },
      small,
    );
    const sock = small.connect(q, { readableHighWaterMark: 16 * 1024 });
    await once(sock, 'connect');
    sock.pause();
    await new Promise((r) => setTimeout(r, 1500));
    // Held in this process: at most the readable buffer plus `prefetch` messages.
    assert.ok(sock.readableLength <= 16 * 1024 * 6, `buffered ${sock.readableLength} bytes while paused`);
    const { bytes } = await digestAll(sock);
    assert.equal(bytes, total);
  });

  it('credit: a paused reader holds its sender to one window, at the broker and in memory, and resumes', async function () {
    this.timeout(60_000);
    const q = uniqueQueue('credit-paused');
    const window = 64 * 1024;
    const windowed = await connect(AMQP_URL, { window, maxMessageSize: 16 * 1024 });
    cleanups.push(() => windowed.close());
    const total = 8 * 1024 * 1024;
    let writerDone = false;
    const { next } = await serveOne(q, (s) => {
      void (async () => {
        const block = Buffer.alloc(40 * 1024, 7); // not a multiple of anything: messages are split to fit
        for (let sent = 0; sent < total; sent += block.length) if (!s.write(block.subarray(0, Math.min(block.length, total - sent)))) await once(s, 'drain');
        s.end();
        writerDone = true;
      })();
    });
    const sock = windowed.connect(q);
    await once(sock, 'connect');
    assert.ok(sock.features.has('credit'));
    sock.pause();
    const serverSide = await next;
    await waitFor(async () => serverSide.bytesWritten >= window);
    await new Promise((r) => setTimeout(r, 1500));
    // The listener's end announced 1 MiB, ours 64 KiB: the listener's writer keeps to ours.
    assert.ok(serverSide.bytesWritten <= window, `the writer sent ${serverSide.bytesWritten} bytes to a paused reader`);
    assert.ok(sock.readableLength <= window, `the paused reader holds ${sock.readableLength} bytes`);
    const local = new URL(sock.localAddress!).searchParams.get('local_queue')!;
    assert.equal(await queueMessages(local), 0, 'nothing waits at the broker: the window is in the reader');
    assert.equal(writerDone, false);
    const { bytes } = await digestAll(sock);
    assert.equal(bytes, total);
    assert.equal(writerDone, true);
  });

  it('refuses a window outside 64 KiB..16 MiB before connecting, naming the range', async () => {
    for (const window of [1000, 64 * 1024 * 1024]) {
      const err = (await connect(AMQP_URL, { window }).catch((e: unknown) => e)) as Error & { code: string };
      assert.equal(err.code, 'ERR_INVALID_ARG');
      assert.match(err.message, /window must be .* from 65536 \(64 KiB\) to 16777216 \(16 MiB\)/);
    }
  });

  it('a plain-v2 peer (features: []) and a full peer talk correctly both ways', async function () {
    this.timeout(60_000);
    const plain = await connect(AMQP_URL, { features: [] });
    cleanups.push(() => plain.close());
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    for (const [client, server] of [
      [plain, conn],
      [conn, plain],
    ] as const) {
      const q = uniqueQueue('plain-v2');
      let accept!: (s: StreamSocket) => void;
      const next = new Promise<StreamSocket>((r) => (accept = r));
      await serve(
        q,
        (s) => {
          accept(s);
          echo(s);
        },
        server,
      );
      const sock = client.connect(q, { allowHalfOpen: true });
      const got = readAll(sock);
      sock.end(payload);
      assert.ok((await got).equals(payload));
      const serverSide = await next;
      assert.equal(sock.protocolVersion, 2);
      assert.deepEqual([...sock.features], []);
      assert.deepEqual([...serverSide.features], []);
    }
  });

  describe('seq: messages forged into a live stream are caught before a wrong byte is delivered', () => {
    const OFFSET = 'x-amqp-stream-offset';
    /** A stream that has received 'hello' from the listener; the forger publishes into the client's data queue. */
    async function liveStream(): Promise<{ sock: StreamSocket; serverSide: StreamSocket; delivered: Buffer[]; ch: amqp.Channel }> {
      const q = uniqueQueue('forged');
      const { next } = await serveOne(q, (s) => s.write('hello'));
      const sock = conn.connect(q);
      const delivered: Buffer[] = [];
      sock.on('data', (b: Buffer) => delivered.push(b));
      await once(sock, 'data');
      assert.ok(sock.features.has('seq'));
      const serverSide = await next;
      serverSide.on('error', () => undefined);
      const raw = await amqp.connect(AMQP_URL);
      cleanups.push(() => raw.close().catch(() => undefined));
      return { sock, serverSide, delivered, ch: await raw.createChannel() };
    }
    const queues = (s: StreamSocket): { local: string; remote: string } => {
      const p = new URL(s.localAddress!).searchParams;
      return { local: p.get('local_queue')!, remote: p.get('remote_queue')! };
    };

    const cases: Array<[string, Record<string, unknown> | undefined, string, RegExp]> = [
      ['a data message without an offset', undefined, 'EVIL', /protocol error: a data message without an offset/],
      ['a duplicate', { [OFFSET]: 0 }, 'EVIL!', /protocol error: a duplicate or reordered message: data at offset 0, expected 5/],
      ['a malformed offset', { [OFFSET]: 'five' }, 'EVIL', /protocol error: a data message with a malformed offset/],
      ['a duplicate in the decimal string form', { [OFFSET]: '0' }, 'EVIL!', /protocol error: a duplicate or reordered message: data at offset 0, expected 5/],
      ['an end-of-stream that truncates', { [OFFSET]: 3 }, '', /protocol error: end-of-stream at offset 3 after 5 bytes/],
      ['an end-of-stream without an offset', undefined, '', /protocol error: an end-of-stream message without an offset/],
    ];
    for (const [name, headers, body, reason] of cases) {
      it(`${name}: ECONNRESET with the reason, the peer is reset, nothing wrong delivered`, async () => {
        const { sock, serverSide, delivered, ch } = await liveStream();
        const ended = countEvents(sock, ['end']);
        const failed = errorOf(sock);
        const peerFailed = errorOf(serverSide);
        ch.sendToQueue(queues(sock).local, Buffer.from(body), { headers });
        const err = await failed;
        assert.equal(err.code, 'ECONNRESET');
        assert.match(err.message, reason);
        assert.equal(Buffer.concat(delivered).toString(), 'hello', 'only the real bytes reached the reader');
        assert.equal(ended.end, 0, 'never a clean end');
        const peerErr = await peerFailed;
        assert.equal(peerErr.code, 'ECONNRESET');
        assert.match(peerErr.message, /the peer reset the stream: protocol error/);
      });
    }

    // With `express` (default) data ahead of its offset is held, not delivered, until the bytes before
    // it come (a small message may pass a large one): a forgery ahead is caught once real data reaches it.
    const ahead: Array<[string, number, string, RegExp]> = [
      // The real data and the real end race (express): whichever comes first catches it.
      ['a message ahead of its turn, overlapped by the real data', 10, 'world!', /protocol error: (data at offset 5 \(6 bytes\) overlaps data held at offset 10|end-of-stream at offset 11 before data up to 14)/],
      ['a gap, then the real end', 5 + 100, 'world!', /protocol error: end-of-stream at offset 11 before data up to 109/],
    ];
    for (const [name, offset, more, reason] of ahead) {
      it(`${name}: ECONNRESET with the reason, the peer is reset, nothing wrong delivered`, async () => {
        const { sock, serverSide, delivered, ch } = await liveStream();
        const ended = countEvents(sock, ['end']);
        const failed = errorOf(sock);
        ch.sendToQueue(queues(sock).local, Buffer.from('EVIL'), { headers: { [OFFSET]: offset } });
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(Buffer.concat(delivered).toString(), 'hello', 'held, not delivered');
        const peerFailed = errorOf(serverSide);
        serverSide.end(more);
        const err = await failed;
        assert.equal(err.code, 'ECONNRESET');
        assert.match(err.message, reason);
        assert.doesNotMatch(Buffer.concat(delivered).toString(), /EVIL/, 'no forged byte reached the reader');
        assert.equal(ended.end, 0, 'never a clean end');
        const peerErr = await peerFailed;
        assert.equal(peerErr.code, 'ECONNRESET');
        assert.match(peerErr.message, /the peer reset the stream: protocol error/);
      });
    }

    it('a credit grant for bytes never sent: the writer fails with a protocol error', async () => {
      const { sock, serverSide, ch } = await liveStream();
      const failed = errorOf(serverSide);
      // The listener has sent 5 bytes; a grant of a million is a lie.
      ch.sendToQueue(queues(sock).remote, Buffer.alloc(0), { headers: { 'x-amqp-stream-credit': 1_000_000 } });
      const err = await failed;
      assert.equal(err.code, 'ECONNRESET');
      assert.match(err.message, /protocol error: a credit grant of 1000000 bytes when 5 were sent/);
      assert.equal((await errorOf(sock)).code, 'ECONNRESET');
    });

    it('the real data still arrives whole when nothing is forged (offsets across split messages)', async () => {
      const q = uniqueQueue('seq-ok');
      const payload = randomBytes(2 * 1024 * 1024 + 3);
      const small = await connect(AMQP_URL, { maxMessageSize: 10_000, window: 64 * 1024 });
      cleanups.push(() => small.close());
      await serve(q, echo, small);
      const sock = small.connect(q);
      const got = readAll(sock);
      for (let i = 0; i < payload.length; i += 7777) sock.write(payload.subarray(i, i + 7777));
      sock.end();
      assert.ok((await got).equals(payload));
      assert.deepEqual([...sock.features].sort(), ['credit', 'express', 'presence', 'resume', 'seq']);
    });
  });

  it('by default sends no message larger than one AMQP body frame (frame_max - 8)', async () => {
    const { q, streams } = await v1Peer('frame');
    const sock = conn.connect(q, { allowHalfOpen: true });
    await once(sock, 'connect');
    sock.end(Buffer.alloc(300_000, 2));
    await waitFor(async () => streams.length === 1);
    await streams[0]!.ended;
    // RabbitMQ's default frame_max is 131072: one body frame carries 131064 bytes.
    assert.deepEqual(
      streams[0]!.received.map((b) => b.length),
      [131_064, 131_064, 300_000 - 2 * 131_064],
    );
    sock.destroy();
    await streams[0]!.close();
  });

  it('sends bulk data piped from a TCP socket in messages larger than one 64 KiB read', async () => {
    const { q, streams } = await v1Peer('bulkpack');
    const sock = conn.connect(q, { allowHalfOpen: true });
    cleanups.push(() => sock.destroy());
    await once(sock, 'connect');
    // A real TCP source: Node reads it at most 64 KiB at a time, often several reads per turn of the event loop.
    const server = net.createServer((tcp) => tcp.pipe(sock));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const total = 16 * 1024 * 1024;
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    cleanups.push(() => client.destroy());
    client.end(Buffer.alloc(total, 5));
    await waitFor(async () => streams.length === 1);
    await streams[0]!.ended;
    const sizes = streams[0]!.received.map((b) => b.length);
    assert.equal(sizes.reduce((a, b) => a + b, 0), total);
    // Each message costs the broker about as much as a full one. Flushing every
    // read on its own made every message 64 KiB or less; gathered per turn of
    // the loop they average more (how much depends on what the kernel hands
    // over per turn: 95-131 KiB here, full 131,064-byte messages on a quiet machine).
    const average = total / sizes.length;
    assert.ok(average > 1.2 * 65_536, `messages average ${Math.round(average)} bytes (sizes: ${sizes.slice(0, 12).join(', ')} ...)`);
    await streams[0]!.close();
  });

  it('hands the frames queued in one turn to the broker socket in one write', async () => {
    // Each socket write is a system call; on a virtual machine it is most of
    // what a small message costs. amqplib writes frame by frame (a message is
    // its method + header and its body frame; an ack and a publish of the
    // same turn are two more); corked for the pass, they leave as one writev.
    const { q, streams } = await v1Peer('onewrite');
    const sock = conn.connect(q, { allowHalfOpen: true });
    await once(sock, 'connect');
    const pub = (conn as unknown as { pubModel: { connection: { stream: net.Socket } } }).pubModel.connection.stream;
    const calls: string[] = [];
    const spy = (name: '_write' | '_writev'): (() => void) => {
      const original = pub[name] as (...args: unknown[]) => unknown;
      pub[name] = function (this: net.Socket, ...args: unknown[]) {
        calls.push(name === '_writev' ? `writev of ${(args[0] as unknown[]).length}` : 'write');
        return original.apply(this, args);
      } as never;
      return () => void (pub[name] = original as never);
    };
    const restore = [spy('_write'), spy('_writev')];
    try {
      sock.write(Buffer.alloc(100_000, 7)); // one message: method + header, then a 100,008-byte body frame
      await waitFor(async () => streams[0]?.received.length === 1);
    } finally {
      for (const r of restore) r();
    }
    assert.deepEqual(calls, ['writev of 2'], `socket writes: ${calls.join(', ')}`);
    sock.destroy();
    await streams[0]!.close();
  });

  it('coalesces many small writes in one tick into one message, and splits large writes', async () => {
    const { q, streams } = await v1Peer('coalesce');
    const c = await connect(AMQP_URL, { maxMessageSize: 1000 });
    cleanups.push(() => c.close());
    const sock = c.connect(q, { allowHalfOpen: true });
    await once(sock, 'connect');
    for (let i = 0; i < 100; i++) sock.write(`frame ${i};`);
    await new Promise((r) => setTimeout(r, 50));
    sock.end(Buffer.alloc(2500, 1));
    await waitFor(async () => streams.length === 1);
    await streams[0]!.ended;
    const sizes = streams[0]!.received.map((b) => b.length);
    const frames = Array.from({ length: 100 }, (_, i) => `frame ${i};`).join('');
    assert.equal(sizes[0], frames.length, 'the 100 small writes arrive as one message');
    assert.deepEqual(sizes.slice(1), [1000, 1000, 500]);
    assert.equal(streams[0]!.data.subarray(0, frames.length).toString(), frames);
    sock.destroy();
    await streams[0]!.close();
  });

  describe('v1 interop with a raw amqplib peer that follows seed-protocol.md', () => {
    const noV2Headers = (msgs: amqp.ConsumeMessage[]): string[] =>
      msgs.flatMap((m) => Object.keys(m.properties.headers ?? {})).filter((h) => h.startsWith('x-amqp-stream'));
    async function rawConnection(): Promise<amqp.ChannelModel> {
      const raw = await amqp.connect(AMQP_URL);
      cleanups.push(() => raw.close().catch(() => undefined));
      return raw;
    }

    it('our client talks to a v1 listener both ways, including EOF, and sends it nothing but v1', async function () {
      this.timeout(30_000);
      const q = uniqueQueue('v1-listener');
      const streams: V1Stream[] = [];
      const listener = await v1Listen(await rawConnection(), q, (s) => streams.push(s));
      cleanups.push(() => listener.close());
      const sock = conn.connect(q, { allowHalfOpen: true });
      const events = countEvents(sock, ['end', 'finish', 'close', 'error']);
      await once(sock, 'connect');
      assert.equal(sock.protocolVersion, 1);
      const got = readAll(sock);
      sock.write('question');
      await waitFor(async () => streams.length === 1 && streams[0]!.data.toString() === 'question');
      const peer = streams[0]!;
      // Quiet for longer than the liveness interval: the v1 peer must not be reset by a probe.
      await new Promise((r) => setTimeout(r, 1500));
      peer.write('ans');
      peer.write('wer');
      await peer.end(); // v1 close: an empty body, then its outgoing channel closes
      assert.equal((await got).toString(), 'answer');
      sock.end();
      await peer.ended;
      if (!sock.destroyed) await once(sock, 'close');
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(events, { end: 1, finish: 1, close: 1, error: 0 });
      assert.deepEqual(noV2Headers(peer.raw), [], 'a v1 peer gets no v2 messages');
      assert.deepEqual(
        peer.raw.map((m) => m.content.toString()),
        ['question', ''],
        'data, then one empty-body EOF',
      );
    });

    it('a v1 client talks to our server both ways, including EOF', async function () {
      this.timeout(30_000);
      const q = uniqueQueue('v1-client');
      const { next } = await serveOne(
        q,
        (s) => {
          void readAll(s).then(async (b) => {
            await new Promise((r) => setTimeout(r, 1200)); // longer than the liveness interval
            s.write(b.toString().toUpperCase());
            s.end('!');
          });
        },
        { allowHalfOpen: true },
      );
      const peer = await v1Dial(await rawConnection(), q);
      const serverSide = await next;
      const events = countEvents(serverSide, ['end', 'finish', 'close', 'error']);
      assert.equal(serverSide.protocolVersion, 1);
      peer.write('hello ');
      peer.write('v1');
      await peer.end();
      await peer.ended;
      assert.equal(peer.data.toString(), 'HELLO V1!');
      if (!serverSide.destroyed) await once(serverSide, 'close');
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(events, { end: 1, finish: 1, close: 1, error: 0 });
      assert.deepEqual(noV2Headers(peer.raw), []);
      await peer.close();
    });

    it('a v1 peer that dies is noticed by an idle stream at its next (backed-off) probe, without sending it anything', async function () {
      this.timeout(30_000);
      const q = uniqueQueue('v1-dies');
      const raw = await amqp.connect(AMQP_URL);
      const streams: V1Stream[] = [];
      await v1Listen(raw, q, (s) => streams.push(s));
      const sock = conn.connect(q);
      await once(sock, 'connect');
      sock.resume();
      await waitFor(async () => streams.length === 1);
      const failed = errorOf(sock);
      // Alive and idle for 1.6 s: probed at 0.5 and 1.5 s after the last message (v1 probes back
      // off while idle); the checks must neither reach it nor take it for dead.
      await new Promise((r) => setTimeout(r, 1600));
      assert.deepEqual(streams[0]!.raw, [], 'a liveness probe reached the live v1 peer');
      assert.equal(sock.destroyed, false, 'a live, idle v1 peer was taken for dead');
      const closedAt = Date.now();
      await raw.close(); // the peer's connection is gone, as when its process is killed
      const err = await failed;
      assert.equal(err.code, 'ECONNRESET');
      // The next probe is due 3.5 s after the last message (a round every 500 ms, then the
      // 150 ms grace): at most about 2.55 s after the death. A busy v1 stream is held to 2 s
      // (stream-liveness.test.ts).
      assert.ok(Date.now() - closedAt <= 3000, `noticed after ${Date.now() - closedAt} ms`);
      assert.deepEqual(streams[0]!.raw, [], 'no probe message reached the v1 peer');
    });
  });

  it('leaves nothing behind on the broker or in the process after 2,000 open/close cycles', async function () {
    this.timeout(300_000);
    const name = uniqueQueue('cycles-conn');
    const c = await connect(AMQP_URL, { connectionName: name });
    cleanups.push(() => c.close());
    const q = uniqueQueue('cycles');
    let resets = 0;
    await serve(
      q,
      (s) => {
        s.on('error', (err: Error & { code?: string }) => {
          if (err.code === 'ECONNRESET') resets++;
        });
        s.pipe(s);
      },
      c,
    );
    // The connection keeps 4 data queues ready (warmQueues) and its presence queue. Data
    // queues are resumable (`resume`, on by default): not exclusive, so the broker does not
    // list them as the connection's; every stream's queues are checked by name below.
    await waitFor(async () => c.warmQueueCount === 4);
    const before = await brokerView(name);
    assert.equal(before.queues, 1 + 1, 'the control queue and the presence queue');
    assert.equal(before.consumers, 1 + 1);
    const used = new Set<string>();
    const noteQueues = (sock: StreamSocket): void => {
      const p = new URL(sock.localAddress!).searchParams;
      for (const k of ['local_queue', 'remote_queue']) if (p.get(k)) used.add(p.get(k)!);
    };
    const handlesBefore = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
    const batch = 50;
    for (let i = 0; i < 2000; i += batch) {
      await Promise.all(
        Array.from({ length: batch }, async (_, j) => {
          const s = c.connect(q);
          s.once('connect', () => noteQueues(s));
          const got = readAll(s);
          // Alternate which side closes first: the client ends, or the client destroys after the echo.
          if ((i + j) % 2 === 0) {
            s.end('x');
            assert.equal((await got).toString(), 'x');
          } else {
            s.write('y');
            await once(s, 'data');
            s.destroy();
            await got.catch(() => undefined);
          }
          if (!s.destroyed) await once(s, 'close');
        }),
      );
    }
    await waitFor(async () => c.socketCount === 0 && c.warmQueueCount === 4);
    assert.equal(resets, 1000, 'every client destroy() is a reset at the server, every end() is not');
    const after = await waitForValue(() => brokerView(name), (v) => v.queues === before.queues && v.consumers === before.consumers);
    assert.deepEqual(after, before);
    assert.equal(used.size, 4000, 'two data queues per stream');
    const left = (await rabbitmqctl<{ name: string }>(['list_queues', 'name'])).filter((x) => used.has(x.name));
    assert.deepEqual(left, [], 'no data queue of a closed stream is left on the broker');
    const handlesAfter = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
    assert.ok(handlesAfter <= handlesBefore, `handles before ${handlesBefore}, after ${handlesAfter}`);
  });

  it('dial() and listen() take Go-style addresses and close their own broker connection', async () => {
    const q = uniqueQueue('shortcut');
    const server = await listen(`${AMQP_URL}?server_queue=${q}`, {}, echo);
    assert.equal(server.address(), `${new URL(AMQP_URL).protocol}//guest@${new URL(AMQP_URL).host}?server_queue=${q}`);
    const sock = dial(`${AMQP_URL}?server_queue=${q}`);
    const got = readAll(sock);
    sock.end('via urls');
    assert.equal((await got).toString(), 'via urls');
    await new Promise<void>((r) => server.close(() => r()));
    assert.equal(await queueExists(q), false);
  });
});

describe('broker connection errors', () => {
  const base = new URL(AMQP_URL);

  it('names wrong credentials without showing the password', async () => {
    const u = new URL(AMQP_URL);
    u.password = 'not-the-Secret-pw';
    const err = (await connect(u.toString()).catch((e: unknown) => e)) as Error & { code: string };
    assert.equal(err.code, 'ERR_AMQP_AUTH');
    assert.match(err.message, /refused the login of user 'guest'/);
    assert.doesNotMatch(err.message + String(err.stack), /not-the-Secret-pw/);
  });

  it('names a missing vhost', async () => {
    const u = new URL(AMQP_URL);
    u.pathname = '/no-such-vhost-here';
    const err = (await connect(u.toString()).catch((e: unknown) => e)) as Error & { code: string };
    assert.equal(err.code, 'ERR_AMQP_VHOST');
    assert.match(err.message, /refused to open vhost 'no-such-vhost-here': the vhost does not exist/);
  });

  it('names an unreachable broker', async () => {
    const net = await import('node:net');
    const srv = net.createServer().listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const port = (srv.address() as { port: number }).port;
    await new Promise((r) => srv.close(r));
    const err = (await connect(`amqp://guest:hunter2@127.0.0.1:${port}`).catch((e: unknown) => e)) as Error & { code: string };
    assert.equal(err.code, 'ECONNREFUSED');
    assert.match(err.message, new RegExp(`cannot reach the broker at 127.0.0.1:${port}`));
    assert.doesNotMatch(err.message, /hunter2/);
    assert.equal(base.protocol, 'amqp:');
  });
});

async function waitFor(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function waitForValue<T>(get: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}
