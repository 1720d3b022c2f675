/**
 * v2 `express` (docs/protocol.md): small data messages go without publisher
 * confirms on a channel of their own, so they may pass a large message sent
 * just before them; the receiver puts the bytes back in offset order.
 *
 * The out-of-order cases are driven by a raw amqplib client (real broker)
 * that does the handshake by hand and publishes data in the order a test
 * picks; the last test runs two real ends with a secret through mixed writes.
 */
import * as assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as amqp from 'amqplib';
import type { ConsumeMessage } from 'amqplib';
import { connect, type Connection, type StreamServer, type StreamSocket } from '../../src/stream';
import { AUTH_HEADER, NONCE_HEADER, StreamAuth } from '../../src/stream/auth';
import { AMQP_URL, digestAll, errorOf, readAll, uniqueQueue } from './support';

const OFFSET = 'x-amqp-stream-offset';

describe('stream: express messages arrive out of order (real broker)', function () {
  this.timeout(30_000);
  let conn: Connection;
  let raw: amqp.ChannelModel;
  let ch: amqp.ConfirmChannel;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];

  before(async () => {
    conn = await connect(AMQP_URL, { connectionName: uniqueQueue('express'), resumeGrace: 0 });
    raw = await amqp.connect(AMQP_URL);
    ch = await raw.createConfirmChannel();
  });
  after(async () => {
    await raw.close();
    await conn.close();
  });
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  /** A listener of ours, and a hand-made client stream to it that offered `features`. */
  async function rawStream(features: string): Promise<{ accepted: StreamSocket; send(offset: number, body: string | Buffer): Promise<void>; reset(reason: string): void; agreed: string }> {
    const queue = uniqueQueue('express');
    const accepted: StreamSocket[] = [];
    const server: StreamServer = conn.createServer({ allowHalfOpen: true }, (s) => accepted.push(s));
    server.listen(queue);
    await once(server, 'listening');
    cleanups.push(async () => {
      for (const s of accepted) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const { queue: mine } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    const replies: ConsumeMessage[] = [];
    await ch.consume(mine, (m) => m && replies.push(m), { noAck: true });
    ch.publish('', queue, Buffer.alloc(0), { replyTo: mine, mandatory: true, headers: { 'x-amqp-stream-version': 2, 'x-amqp-stream-features': features } });
    await ch.waitForConfirms();
    const deadline = Date.now() + 10_000;
    while (replies.length === 0 || accepted.length === 0) {
      if (Date.now() > deadline) throw new Error('no handshake reply');
      await new Promise((r) => setTimeout(r, 20));
    }
    const reply = replies[0]!;
    const listenerQueue = reply.properties.replyTo as string;
    const send = async (offset: number, body: string | Buffer): Promise<void> => {
      ch.publish('', listenerQueue, Buffer.from(body), { mandatory: true, headers: { [OFFSET]: offset } });
      await ch.waitForConfirms();
    };
    const reset = (reason: string): void => void ch.publish('', listenerQueue, Buffer.alloc(0), { headers: { 'x-amqp-stream-reset': reason } });
    return { accepted: accepted[0]!, send, reset, agreed: String(reply.properties.headers?.['x-amqp-stream-features'] ?? '') };
  }

  it('puts data that passed earlier data back in order, and ends only after it', async () => {
    const { accepted, send, agreed } = await rawStream('credit,seq,express');
    assert.match(agreed, /express/, 'the listener accepts express');
    const all = digestAll(accepted);
    // As a 10-byte express message overtaking a large one would arrive: the later bytes and the end first.
    await send(5, 'world');
    await send(10, Buffer.alloc(0)); // the end, at offset 10
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(accepted.readableEnded, false, 'no end while bytes before it are missing');
    await send(0, 'hello');
    const got = await all;
    assert.equal(got.bytes, 10);
    assert.equal(got.sha, createHash('sha256').update('helloworld').digest('hex'));

    // The end alone ahead of the last (small) message.
    const second = await rawStream('credit,seq,express');
    const all2 = digestAll(second.accepted);
    await second.send(5, Buffer.alloc(0));
    await second.send(0, 'hello');
    const got2 = await all2;
    assert.equal(got2.bytes, 5);
  });

  it('never reads a gap that does not fill as an end: the peer\'s reset fails the stream', async () => {
    const { accepted, send, reset } = await rawStream('credit,seq,express');
    const ended = once(accepted, 'end').then(() => 'end');
    await send(5, 'world');
    await send(10, Buffer.alloc(0));
    const early = await Promise.race([ended, new Promise((r) => setTimeout(() => r('nothing'), 500))]);
    assert.equal(early, 'nothing', 'a held end with bytes missing before it is no end');
    assert.equal(accepted.read(), null, 'no held byte reaches the reader');
    const failed = errorOf(accepted);
    reset('gave up');
    const err = await failed;
    assert.equal(err.code, 'ECONNRESET');
    assert.match(err.message, /gave up/);
  });

  it('still resets on data beyond the window, on a duplicate, and on an end before held data', async () => {
    const beyond = await rawStream('credit,seq,express');
    const e1 = errorOf(beyond.accepted);
    await beyond.send(64 * 1024 * 1024, 'far ahead');
    assert.match((await e1).message, /beyond its credit window/);

    const dup = await rawStream('credit,seq,express');
    const e2 = errorOf(dup.accepted);
    await dup.send(0, 'hello');
    await dup.send(0, 'hello');
    assert.match((await e2).message, /duplicate or reordered/);

    const early = await rawStream('credit,seq,express');
    const e3 = errorOf(early.accepted);
    await early.send(5, 'world');
    await early.send(7, Buffer.alloc(0));
    assert.match((await e3).message, /end-of-stream at offset 7 before data up to 10/);
  });

  it('without express agreed, data out of order is a protocol error as before', async () => {
    const { accepted, send, agreed } = await rawStream('credit,seq');
    assert.doesNotMatch(agreed, /express/);
    const failed = errorOf(accepted);
    await send(5, 'world');
    assert.match((await failed).message, /a gap: data at offset 5, expected 0/);
  });

  it('with a secret, the listener keeps data that passed the client\'s proof until the proof checks', async () => {
    const secret = randomBytes(32);
    const listener = await connect(AMQP_URL, { secret, connectionName: uniqueQueue('express-auth') });
    cleanups.push(() => listener.close());
    const queue = uniqueQueue('express-auth');
    const accepted: StreamSocket[] = [];
    const server = listener.createServer({ allowHalfOpen: true }, (s) => accepted.push(s));
    server.listen(queue);
    await once(server, 'listening');
    cleanups.push(async () => {
      for (const s of accepted) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    // A client by hand: auth, credit, seq and express, no aead (so the data is plain).
    const auth = new StreamAuth(secret, 'client');
    const { queue: mine } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    const replies: ConsumeMessage[] = [];
    await ch.consume(mine, (m) => m && replies.push(m), { noAck: true });
    const features = 'auth,credit,express,seq';
    ch.publish('', queue, Buffer.alloc(0), { replyTo: mine, mandatory: true, headers: { 'x-amqp-stream-version': 2, 'x-amqp-stream-features': features, [NONCE_HEADER]: auth.nonce.toString('base64') } });
    await ch.waitForConfirms();
    while (replies.length === 0) await new Promise((r) => setTimeout(r, 20));
    const reply = replies[0]!;
    const listenerQueue = reply.properties.replyTo as string;
    const agreed = String(reply.properties.headers?.['x-amqp-stream-features']);
    assert.equal(agreed.split(',').sort().join(','), features, 'the listener agreed to auth, credit, express and seq');
    assert.ok(auth.takePeerNonce(reply.properties.headers));
    const proof = auth.proof({ serverQueue: queue, clientQueue: mine, listenerQueue, features: `${features}/${features}` });
    // The first data message overtakes the proof, as an express message may.
    ch.publish('', listenerQueue, Buffer.from('hello'), { mandatory: true, headers: { [OFFSET]: 0 } });
    ch.publish('', listenerQueue, Buffer.alloc(0), { mandatory: true, headers: { [AUTH_HEADER]: proof } });
    ch.publish('', listenerQueue, Buffer.alloc(0), { mandatory: true, headers: { [OFFSET]: 5 } });
    await ch.waitForConfirms();
    const deadline = Date.now() + 10_000;
    while (accepted.length === 0) {
      if (Date.now() > deadline) throw new Error(`the listener announced no stream (replies: ${replies.length})`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const got = await readAll(accepted[0]!);
    assert.equal(got.toString(), 'hello');
  });

  it('carries mixed small and large writes intact between two ends with a secret', async () => {
    const secret = randomBytes(32);
    const a = await connect(AMQP_URL, { secret, connectionName: uniqueQueue('express-a') });
    const b = await connect(AMQP_URL, { secret, connectionName: uniqueQueue('express-b') });
    cleanups.push(() => Promise.all([a.close(), b.close()]));
    const queue = uniqueQueue('express-mixed');
    const server = a.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    server.listen(queue);
    await once(server, 'listening');
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const sock = b.connect(queue, { allowHalfOpen: true });
    await once(sock, 'connect');
    const sent = createHash('sha256');
    let total = 0;
    const echoed = digestAll(sock);
    for (let i = 0; i < 300; i++) {
      // A large message goes with a confirm, the small one after it without: it may pass it (and the
      // first one may pass the client's proof of the secret, which the listener then waits for).
      const chunk = randomBytes(i % 2 === 1 ? 40_000 + i : 1 + (i % 7));
      sent.update(chunk);
      total += chunk.length;
      if (!sock.write(chunk)) await once(sock, 'drain');
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    sock.end();
    const got = await echoed;
    assert.equal(got.bytes, total);
    assert.equal(got.sha, sent.digest('hex'));
  });
});
