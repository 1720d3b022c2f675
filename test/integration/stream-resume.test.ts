/**
 * v2 `resume` in the library (docs/protocol.md, "resume"): streams held
 * through a broker connection drop of either end, against the real broker,
 * with the TCP fault proxy between one end and the broker (the shared broker
 * is never stopped).
 */
import * as assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, DEFAULT_FEATURES, type Connection, type ConnectOptions, type StreamSocket } from '../../src/stream';
import type { Feature } from '../../src/stream/protocol';
import * as amqp from 'amqplib';
import { FaultProxy } from './faultproxy';
import { v1Dial, v1Listen, type V1Stream } from './v1peer';
import { AMQP_URL, errorOf, queueExists, uniqueQueue } from './support';

const brokerPort = Number(new URL(AMQP_URL).port || 5672);
const RESUME: Feature[] = [...DEFAULT_FEATURES, 'resume'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The queue names in a stream address ("...?server_queue=..&local_queue=..&remote_queue=.."). */
function queuesOf(s: StreamSocket): { local: string; remote: string } {
  const u = new URL(s.localAddress!);
  return { local: u.searchParams.get('local_queue')!, remote: u.searchParams.get('remote_queue')! };
}

describe('stream resume (real broker, fault proxy)', function () {
  this.timeout(Number(process.env.RESUME_TEST_TIMEOUT ?? 120_000));
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function open(options: ConnectOptions, url = AMQP_URL): Promise<Connection> {
    const c = await connect(url, { features: RESUME, ...options });
    cleanups.push(() => c.close());
    return c;
  }

  async function proxy(): Promise<FaultProxy> {
    const p = await new FaultProxy(brokerPort).start();
    cleanups.push(() => p.close());
    return p;
  }

  /** A listener that echoes every stream back; resolves with the accepted socket of the first stream. */
  async function echo(c: Connection, queue: string): Promise<{ accepted: Promise<StreamSocket> }> {
    let first!: (s: StreamSocket) => void;
    const accepted = new Promise<StreamSocket>((r) => (first = r));
    const server = c.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.pipe(s);
      first(s);
    });
    server.on('error', () => undefined);
    server.listen(queue);
    await once(server, 'listening');
    return { accepted }; // not the promise itself: an async function would wait for it
  }

  /** Write `total` random bytes, read the echo, cut the proxy `cuts` times for `cutMs` meanwhile; returns both digests. */
  async function transfer(client: StreamSocket, total: number, during: (received: () => number) => Promise<void>): Promise<{ sent: string; got: string; bytes: number }> {
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let bytes = 0;
    client.on('data', (c: Buffer) => {
      got.update(c);
      bytes += c.length;
    });
    const ended = new Promise<void>((resolve, reject) => {
      client.once('end', resolve);
      client.once('error', reject);
    });
    const writing = (async () => {
      let left = total;
      while (left > 0) {
        const chunk = randomBytes(Math.min(64 * 1024, left));
        left -= chunk.length;
        sent.update(chunk);
        if (!client.write(chunk)) await once(client, 'drain');
      }
      client.end();
    })();
    await Promise.all([writing, during(() => bytes), ended]);
    return { sent: sent.digest('hex'), got: got.digest('hex'), bytes };
  }

  for (const side of ['client', 'listener'] as const) {
    it(`resumes an echo stream when the ${side}'s broker connection is cut for 2 s: every byte back once, in order`, async () => {
      const p = await proxy();
      const q = uniqueQueue(`resume-${side}`);
      const listener = await open({ resumeGrace: 30 }, side === 'listener' ? p.url(AMQP_URL) : AMQP_URL);
      const clientConn = await open({ resumeGrace: 30 }, side === 'client' ? p.url(AMQP_URL) : AMQP_URL);
      const { accepted } = await echo(listener, q);
      const client = clientConn.connect(q, { allowHalfOpen: true });
      await once(client, 'connect');
      assert.ok(client.features.has('resume'), 'resume is in use');
      const cutConn = side === 'client' ? clientConn : listener;
      let reconnecting = 0;
      cutConn.on('reconnecting', () => reconnecting++);
      const total = 32 * 1024 * 1024;
      const r = await transfer(client, total, async (received) => {
        // Cut mid-transfer (a fast machine echoes 32 MiB in well under a second).
        while (received() < total / 4) await sleep(5);
        p.cutAll();
        await sleep(2000);
        assert.equal(cutConn.reconnecting, true);
        assert.equal(cutConn.heldStreams, 1);
        p.resume();
      });
      assert.equal(reconnecting, 1);
      assert.equal(r.bytes, total);
      assert.equal(r.got, r.sent);
      const s = await accepted;
      assert.equal(s.errored, null, 'the listener end was never reset');
    });
  }

  it('resets both ends after the grace period, and the broker holds no queue of the stream', async () => {
    const p = await proxy();
    const q = uniqueQueue('resume-grace');
    const listener = await open({ resumeGrace: 2 });
    const clientConn = await open({ resumeGrace: 2 }, p.url(AMQP_URL));
    const { accepted } = await echo(listener, q);
    const client = clientConn.connect(q, { allowHalfOpen: true });
    await once(client, 'connect');
    client.write('hello');
    await once(client, 'data');
    const server = await accepted;
    const { local, remote } = queuesOf(client);
    assert.ok(await queueExists(local));
    const clientErr = errorOf(client);
    const serverErr = errorOf(server);
    p.cutAll();
    const [ce, se] = await Promise.all([clientErr, serverErr]);
    assert.equal(ce.code, 'ECONNRESET');
    assert.match(ce.message, /did not come back within 2 s/);
    assert.equal(se.code, 'ECONNRESET');
    assert.match(se.message, /did not come back within 2 s/);
    p.resume();
    // The listener deleted both queues; the broker would have expired the client's anyway.
    for (let i = 0; i < 20 && ((await queueExists(local)) || (await queueExists(remote))); i++) await sleep(250);
    assert.equal(await queueExists(local), false, 'the client end data queue is gone');
    assert.equal(await queueExists(remote), false, 'the listener end data queue is gone');
  });

  it('a clean close deletes the resumable queues at once', async () => {
    const q = uniqueQueue('resume-clean');
    const listener = await open({ resumeGrace: 30 });
    const clientConn = await open({ resumeGrace: 30 });
    const { accepted } = await echo(listener, q);
    const client = clientConn.connect(q, { allowHalfOpen: true });
    await once(client, 'connect');
    const { local, remote } = queuesOf(client);
    const back: Buffer[] = [];
    client.on('data', (c: Buffer) => back.push(c));
    const closed = once(client, 'close');
    client.end('bye');
    await closed;
    const server = await accepted;
    if (!server.destroyed) await once(server, 'close');
    await sleep(200);
    assert.equal(Buffer.concat(back).toString(), 'bye');
    assert.equal(await queueExists(local), false);
    assert.equal(await queueExists(remote), false);
  });
  it('under aead (a tunnel secret on both ends), resumes with the same keys: every byte back once, in order', async () => {
    const p = await proxy();
    const q = uniqueQueue('resume-aead');
    const secret = 'resume-test-secret-0123456789abcdef';
    const listener = await open({ resumeGrace: 30, secret });
    const clientConn = await open({ resumeGrace: 30, secret }, p.url(AMQP_URL));
    const { accepted } = await echo(listener, q);
    const client = clientConn.connect(q, { allowHalfOpen: true });
    await once(client, 'connect');
    assert.deepEqual([...client.features].sort(), ['aead', 'auth', 'credit', 'express', 'presence', 'resume', 'seq']);
    const total = 32 * 1024 * 1024;
    const r = await transfer(client, total, async (received) => {
      while (received() < total / 4) await sleep(5);
      p.cutAll();
      await sleep(2000);
      p.resume();
    });
    assert.equal(r.bytes, total);
    assert.equal(r.got, r.sent);
    assert.equal((await accepted).errored, null);
  });

  it('a v1 peer (the Go library) is unchanged: a drop resets the stream, and v1 still interoperates with an end that offers resume', async () => {
    const p = await proxy();
    const q = uniqueQueue('resume-v1');
    const raw = await amqp.connect(AMQP_URL);
    cleanups.push(() => raw.close().catch(() => undefined));
    const streams: V1Stream[] = [];
    const l = await v1Listen(raw, q, (s) => streams.push(s));
    cleanups.push(() => l.close());
    const clientConn = await open({ resumeGrace: 30 }, p.url(AMQP_URL));
    let reconnecting = 0;
    clientConn.on('reconnecting', () => reconnecting++);
    const client = clientConn.connect(q, { allowHalfOpen: true });
    await once(client, 'connect');
    assert.equal(client.protocolVersion, 1);
    client.write('to v1');
    for (let i = 0; i < 100 && streams[0]?.data.toString() !== 'to v1'; i++) await sleep(20);
    assert.equal(streams[0]!.data.toString(), 'to v1');
    streams[0]!.write('from v1');
    await once(client, 'data');
    const failed = errorOf(client);
    p.cutAll();
    assert.equal((await failed).code, 'ECONNRESET');
    assert.equal(reconnecting, 0, 'nothing held: the connection is lost as before');
    p.resume();
    // A v1 client against a listener that offers resume: still a working stream.
    const listener = await open({ resumeGrace: 30 });
    const q2 = uniqueQueue('resume-v1-listen');
    const { accepted } = await echo(listener, q2);
    const v1 = await v1Dial(raw, q2);
    v1.write('ping v1');
    for (let i = 0; i < 100 && v1.data.toString() !== 'ping v1'; i++) await sleep(20);
    assert.equal(v1.data.toString(), 'ping v1');
    assert.equal((await accepted).protocolVersion, 1);
    await v1.close();
  });

  it('a resume message without a valid tag under aead is a protocol error, never a retransmission', async () => {
    const q = uniqueQueue('resume-forged');
    const secret = 'resume-test-secret-0123456789abcdef';
    const listener = await open({ resumeGrace: 30, secret });
    const clientConn = await open({ resumeGrace: 30, secret });
    const { accepted } = await echo(listener, q);
    const client = clientConn.connect(q, { allowHalfOpen: true });
    await once(client, 'connect');
    client.write('x');
    await once(client, 'data');
    const server = await accepted;
    const { local } = queuesOf(client);
    const failed = errorOf(client);
    const raw = await amqp.connect(AMQP_URL);
    cleanups.push(() => raw.close().catch(() => undefined));
    const ch = await raw.createChannel();
    ch.publish('', local, Buffer.alloc(0), { headers: { 'x-amqp-stream-resume': 0 } });
    const err = await failed;
    assert.equal(err.code, 'ECONNRESET');
    assert.match(err.message, /resume message without a valid tag/);
    // The listener end is told, with a (tagged) reset.
    if (!server.destroyed) await new Promise((r) => server.once('close', r));
    assert.match(String(server.errored), /the peer reset the stream: protocol error: a resume message without a valid tag/);
  });
  it('both ends cut at once, five streams: all held, all resume with every byte back once, in order', async () => {
    const pa = await proxy();
    const pb = await proxy();
    const q = uniqueQueue('resume-both');
    const listener = await open({ resumeGrace: 30 }, pa.url(AMQP_URL));
    const clientConn = await open({ resumeGrace: 30 }, pb.url(AMQP_URL));
    await echo(listener, q);
    const clients = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const c = clientConn.connect(q, { allowHalfOpen: true });
        await once(c, 'connect');
        return c;
      }),
    );
    let held: number[] = [];
    const cut = (async () => {
      while (!clients.some((c) => c.bytesRead > 1024 * 1024)) await sleep(5);
      pa.cutAll();
      pb.cutAll();
      await sleep(3000);
      held = [listener.heldStreams, clientConn.heldStreams];
      pa.resume();
      await sleep(700);
      pb.resume();
    })();
    const total = 16 * 1024 * 1024;
    const results = await Promise.all(clients.map((c, i) => transfer(c, total, () => (i === 0 ? cut : Promise.resolve()))));
    assert.deepEqual(held, [5, 5]);
    for (const r of results) {
      assert.equal(r.bytes, total);
      assert.equal(r.got, r.sent);
    }
  });
  for (const delay of [-1, 0, 1, 5]) {
    it(`a stream whose end is on its way when the connection is cut (${delay < 0 ? 'at once' : `${delay} ms`} after end()) resumes and closes cleanly, echo complete`, async () => {
      const p = await proxy();
      const q = uniqueQueue('resume-end');
      const listener = await open({ resumeGrace: 30 });
      const clientConn = await open({ resumeGrace: 30 }, p.url(AMQP_URL));
      const { accepted } = await echo(listener, q);
      const client = clientConn.connect(q, { allowHalfOpen: true });
      await once(client, 'connect');
      const data = randomBytes(1024);
      const back: Buffer[] = [];
      client.on('data', (c: Buffer) => back.push(c));
      const ended = new Promise<void>((resolve, reject) => {
        client.once('end', resolve);
        client.once('error', reject);
      });
      const finished = new Promise<void>((resolve, reject) => {
        client.once('finish', resolve);
        client.once('error', reject);
      });
      client.end(data);
      if (delay < 0) await new Promise((r) => setImmediate(r));
      else await sleep(delay);
      p.cutAll();
      await sleep(1000);
      p.resume();
      await Promise.all([ended, finished]);
      assert.ok(Buffer.concat(back).equals(data), 'the echo is complete and in order');
      assert.equal((await accepted).errored, null);
    });
  }
});
