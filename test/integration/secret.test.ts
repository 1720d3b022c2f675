/**
 * Tunnel secrets (feature `auth`) against the real broker: both ends prove
 * the secret, bound to the stream; whoever cannot is refused at once, with a
 * sentence that says why, and the listener never hands the stream on.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as amqp from 'amqplib';
import type { ConsumeMessage } from 'amqplib';
import { connect, type Connection, type StreamSocket } from '../../src/stream';
import { AUTH_HEADER, NONCE_HEADER, PROOF_HEADER, REFUSED_HEADER } from '../../src/stream/auth';
import { CREDIT_HEADER, FEATURES_HEADER, OFFSET_HEADER, RESET_HEADER, VERSION_HEADER } from '../../src/stream/protocol';
import { TAG_HEADER } from '../../src/stream/aead';
import { authKey, handshakeProof, headerBytes, newNonce } from '../../src/stream/secure';
import { AMQP_URL, errorOf, readAll, uniqueQueue } from './support';

const SECRET = 'test secret: 7f3c9a1e5b2d4c6f';
const OTHER = 'another secret: 0a1b2c3d4e5f6071';

describe('tunnel secrets (auth) on a real broker', function () {
  this.timeout(30_000);
  const conns: Connection[] = [];
  const raws: amqp.ChannelModel[] = [];
  let warnings: string[] = [];
  const logger = { debug() {}, info() {}, error: (m: string) => warnings.push(m), warn: (m: string) => warnings.push(m) };

  async function open(options: Parameters<typeof connect>[1] = {}): Promise<Connection> {
    const c = await connect(AMQP_URL, { logger, ...options });
    conns.push(c);
    return c;
  }

  async function rawConnection(): Promise<amqp.ChannelModel> {
    const m = await amqp.connect(AMQP_URL);
    raws.push(m);
    return m;
  }

  /** A listener whose accepted streams are echoed; counts them. */
  async function serve(conn: Connection, queue: string, secret?: string): Promise<{ accepted: StreamSocket[] }> {
    const accepted: StreamSocket[] = [];
    const srv = conn.createServer({ secret }, (s) => {
      accepted.push(s);
      s.on('error', () => undefined);
      s.pipe(s);
    });
    srv.listen(queue);
    await once(srv, 'listening');
    return { accepted };
  }

  async function waitForWarning(re: RegExp): Promise<string> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const hit = warnings.find((w) => re.test(w));
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no warning matching ${re}; got:\n${warnings.join('\n')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  beforeEach(() => {
    warnings = [];
  });

  afterEach(async () => {
    await Promise.all(conns.splice(0).map((c) => c.close()));
    await Promise.all(raws.splice(0).map((m) => m.close().catch(() => undefined)));
  });

  it('carries a stream when both sides have the same secret, with auth in use on both ends', async () => {
    const q = uniqueQueue('auth-ok');
    const server = await open({ secret: SECRET });
    const { accepted } = await serve(server, q);
    const client = await open({ secret: SECRET });
    const s = client.connect(q);
    await once(s, 'connect');
    assert.ok(s.features.has('auth'));
    const got = readAll(s);
    s.end('hello with a secret');
    assert.equal((await got).toString(), 'hello with a secret');
    assert.equal(accepted.length, 1);
    assert.ok(accepted[0]!.features.has('auth'));
  });

  it('a secret given per server and per stream overrides the connection (one connection, two tunnels)', async () => {
    const q = uniqueQueue('auth-per-stream');
    const conn = await open();
    await serve(conn, q, SECRET);
    const s = conn.connect(q, { secret: SECRET });
    const got = readAll(s);
    s.end('per stream');
    assert.equal((await got).toString(), 'per stream');
  });

  it('a wrong secret fails at once saying the secret does not match, and the listener hands nothing on', async () => {
    const q = uniqueQueue('auth-wrong');
    const { accepted } = await serve(await open({ secret: SECRET }), q);
    const client = await open({ secret: OTHER, handshakeTimeout: 10_000 });
    const started = Date.now();
    const s = client.connect(q);
    const err = await errorOf(s);
    assert.equal(err.code, 'ERR_AMQP_SECRET');
    assert.match(err.message, /^the tunnel secret does not match the one of the publisher on queue '.*' at amqp:\/\/\S+ — use the same secret on both sides$/);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms: that is a timeout, not a refusal`);
    const line = await waitForWarning(/refused a stream/);
    assert.match(line, new RegExp(`refused a stream on queue '${q}' from 'amq\\.gen-[^']+': the client gave up: the tunnel secret does not match`));
    assert.equal(accepted.length, 0);
    for (const w of warnings) assert.ok(!w.includes(SECRET) && !w.includes(OTHER), w);
  });

  it('a client without a secret is refused at once by a publisher that has one; both sides say why', async () => {
    const q = uniqueQueue('auth-missing');
    const { accepted } = await serve(await open({ secret: SECRET }), q);
    const s = (await open()).connect(q);
    const err = await errorOf(s);
    assert.equal(err.code, 'ERR_AMQP_SECRET');
    assert.match(err.message, /^the publisher on queue '.*' at amqp:\/\/.* requires a tunnel secret — set the same secret on this side$/);
    assert.match(await waitForWarning(/refused a stream/), /the client has no tunnel secret, and this publisher requires one/);
    assert.equal(accepted.length, 0);
  });

  it('a client with a secret refuses a publisher without one, and tells it why', async () => {
    const q = uniqueQueue('auth-listener-missing');
    const server = await open();
    const srv = server.createServer({}, (s) => {
      s.on('error', (e: Error) => warnings.push(`server stream: ${e.message}`));
      s.resume();
    });
    srv.listen(q);
    await once(srv, 'listening');
    const s = (await open({ secret: SECRET })).connect(q);
    const err = await errorOf(s);
    assert.equal(err.code, 'ERR_AMQP_SECRET');
    assert.match(err.message, /has no tunnel secret, but this side has one — set the same secret on the publisher$/);
    assert.match(await waitForWarning(/server stream/), /the peer reset the stream: the client requires a tunnel secret/);
  });

  it('a v1 request is rejected by a publisher with a secret, which logs one line why', async () => {
    const q = uniqueQueue('auth-v1');
    const { accepted } = await serve(await open({ secret: SECRET }), q);
    const raw = await rawConnection();
    const ch = await raw.createChannel();
    const own = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    const replies: ConsumeMessage[] = [];
    await ch.consume(own.queue, (m) => m && replies.push(m), { noAck: true });
    ch.publish('', q, Buffer.alloc(0), { replyTo: own.queue, mandatory: true });
    const line = await waitForWarning(/refused a stream/);
    assert.match(line, new RegExp(`from '${own.queue}': a v1 client cannot authenticate, and this publisher requires a tunnel secret$`));
    // A round trip on the same channel: anything the publisher had sent would be here by now.
    await ch.checkQueue(own.queue);
    assert.equal(replies.length, 0);
    assert.equal(accepted.length, 0);
  });

  it('refuses a client proof replayed from a recorded handshake (new listener nonce), opening nothing', async () => {
    const q = uniqueQueue('auth-replay');
    const { accepted } = await serve(await open({ secret: SECRET }), q);
    const raw = await rawConnection();
    const ch = await raw.createChannel();
    const own = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    const inbox: ConsumeMessage[] = [];
    let wake = (): void => undefined;
    await ch.consume(own.queue, (m) => {
      if (m) inbox.push(m);
      wake();
    }, { noAck: true });
    const next = async (): Promise<ConsumeMessage> => {
      while (inbox.length === 0) await new Promise<void>((r) => (wake = r));
      return inbox.shift()!;
    };
    // What an eavesdropper recorded: a request nonce and the client proof of an earlier stream.
    const nonceC = newNonce();
    const recordedProof = handshakeProof(authKey(Buffer.from(SECRET)), 'client', {
      serverQueue: q,
      clientQueue: own.queue,
      listenerQueue: 'amq.gen-of-the-earlier-stream',
      nonceClient: nonceC,
      nonceListener: newNonce(),
    });
    ch.publish('', q, Buffer.alloc(0), {
      replyTo: own.queue,
      headers: { [VERSION_HEADER]: 2, [FEATURES_HEADER]: 'auth', [NONCE_HEADER]: nonceC.toString('base64') },
    });
    const reply = await next();
    assert.ok(headerBytes(reply.properties.headers?.[NONCE_HEADER], 16), 'the reply carries the listener nonce');
    assert.ok(headerBytes(reply.properties.headers?.[PROOF_HEADER], 32), 'and its proof');
    ch.publish('', reply.properties.replyTo as string, Buffer.alloc(0), { headers: { [AUTH_HEADER]: recordedProof.toString('base64') } });
    const refusal = await next();
    assert.equal(String(refusal.properties.headers?.[RESET_HEADER]), 'the tunnel secret does not match');
    assert.match(await waitForWarning(/refused a stream/), /: the tunnel secret does not match$/);
    assert.equal(accepted.length, 0);
  });

  it('a v2 client without auth gets a refused reply it can read', async () => {
    const q = uniqueQueue('auth-refused-reply');
    await serve(await open({ secret: SECRET }), q);
    const raw = await rawConnection();
    const ch = await raw.createChannel();
    const own = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    const got = new Promise<ConsumeMessage>((resolve) => void ch.consume(own.queue, (m) => m && resolve(m), { noAck: true }));
    ch.publish('', q, Buffer.alloc(0), { replyTo: own.queue, headers: { [VERSION_HEADER]: 2 } });
    const reply = await got;
    assert.equal(String(reply.properties.headers?.[REFUSED_HEADER]), 'this tunnel requires a secret');
    assert.equal(reply.properties.replyTo, undefined, 'no data queue was opened for it');
  });

  it('logs refusals rate-limited: a flood of bad requests makes one line, never the secret', async () => {
    const q = uniqueQueue('auth-flood');
    await serve(await open({ secret: SECRET }), q);
    const client = await open({ secret: OTHER });
    const errors = await Promise.all(Array.from({ length: 20 }, () => errorOf(client.connect(q))));
    assert.ok(errors.every((e) => e.code === 'ERR_AMQP_SECRET'));
    await waitForWarning(/refused a stream/);
    // All 20 were refused (each client heard it); the listener's log holds one line for them.
    const lines = warnings.filter((w) => /refused a stream/.test(w));
    assert.equal(lines.length, 1, lines.join('\n'));
  });

  describe('aead: data encrypted end to end, every message authenticated', () => {
    interface Sent {
      queue: string;
      body: Buffer;
      headers: Record<string, unknown>;
    }

    /**
     * A stream with a secret whose client connection records what it publishes
     * (a spy on our Connection.publish; the broker is real), and a raw amqplib
     * connection for an attacker who can publish into the listener's data queue.
     */
    async function setup(label: string): Promise<{ client: StreamSocket; server: StreamSocket; sent: Sent[]; listenerQueue: string; attacker: amqp.Channel }> {
      const q = uniqueQueue(label);
      const { accepted } = await serve(await open({ secret: SECRET }), q);
      const conn = await open({ secret: SECRET });
      const sent: Sent[] = [];
      const publish = conn.publish.bind(conn);
      conn.publish = (queue, body, options, confirmed) => {
        sent.push({ queue, body: Buffer.from(body), headers: { ...(options.headers as Record<string, unknown>) } });
        return publish(queue, body, options, confirmed);
      };
      const client = conn.connect(q);
      await once(client, 'connect');
      while (accepted.length === 0) await new Promise((r) => setImmediate(r));
      const listenerQueue = new URL(client.remoteAddress!).searchParams.get('local_queue')!;
      const attacker = await (await rawConnection()).createChannel();
      return { client, server: accepted[0]!, sent, listenerQueue, attacker };
    }

    /** Write `text` and wait for its echo. */
    async function echoOf(s: StreamSocket, text: string): Promise<string> {
      let got = '';
      const done = new Promise<void>((resolve) => {
        const on = (d: Buffer): void => {
          got += d.toString();
          if (got.length >= text.length) {
            s.off('data', on);
            resolve();
          }
        };
        s.on('data', on);
      });
      s.write(text);
      await done;
      return got;
    }

    it('uses aead with a secret, and no message on the wire holds the plaintext', async () => {
      const { client, server, sent } = await setup('aead-ok');
      assert.ok(client.features.has('aead') && server.features.has('aead'), [...client.features].join(','));
      const text = 'Runtime.evaluate 6*7 '.repeat(500);
      assert.equal(await echoOf(client, text), text);
      const data = sent.filter((m) => m.body.length > 0);
      assert.ok(data.length > 0);
      assert.ok(data.every((m) => !m.body.includes('Runtime.evaluate')), 'plaintext on the wire');
    });

    const attacks: Array<[string, (a: { sent: Sent[]; expected: number }) => { body: Buffer; headers: Record<string, unknown> }, RegExp]> = [
      [
        'a modified message (one bit flipped, its offset made right)',
        ({ sent, expected }) => {
          const m = sent.filter((x) => x.body.length > 0).at(-1)!;
          const body = Buffer.from(m.body);
          body[3]! ^= 1;
          return { body, headers: { ...m.headers, [OFFSET_HEADER]: expected } };
        },
        /protocol error: the data message at offset \d+ does not authenticate/,
      ],
      [
        'a replayed message (a recorded one sent again as it was)',
        ({ sent }) => sent.filter((x) => x.body.length > 0)[0]!,
        /protocol error: a duplicate or reordered message: data at offset 0/,
      ],
      [
        'a replayed or reordered message moved to the expected offset',
        ({ sent, expected }) => ({ body: sent.filter((x) => x.body.length > 0)[0]!.body, headers: { [OFFSET_HEADER]: expected } }),
        /protocol error: the data message at offset \d+ does not authenticate/,
      ],
      [
        'an injected message (made up, at the expected offset)',
        ({ expected }) => ({ body: Buffer.from('{"method":"Runtime.evaluate","params":{"expression":"process.exit()"}} + 16 bytes tag'), headers: { [OFFSET_HEADER]: expected } }),
        /protocol error: the data message at offset \d+ does not authenticate/,
      ],
      [
        'a forged end-of-stream (right offset, no tag): a cut transfer must not look complete',
        ({ expected }) => ({ body: Buffer.alloc(0), headers: { [OFFSET_HEADER]: expected } }),
        /protocol error: an end-of-stream without a valid tag/,
      ],
      [
        'a forged end-of-stream with a tag copied from another stream',
        ({ expected }) => ({ body: Buffer.alloc(0), headers: { [OFFSET_HEADER]: expected, [TAG_HEADER]: Buffer.alloc(32, 7).toString('base64') } }),
        /protocol error: an end-of-stream without a valid tag/,
      ],
      [
        'a forged reset',
        () => ({ body: Buffer.alloc(0), headers: { [RESET_HEADER]: 'the peer went away' } }),
        /protocol error: a reset without a valid tag/,
      ],
      [
        'a forged credit grant',
        () => ({ body: Buffer.alloc(0), headers: { [CREDIT_HEADER]: 1 } }),
        /protocol error: a credit grant without a valid tag/,
      ],
    ];
    for (const [what, forge, re] of attacks) {
      it(`${what} destroys the stream with a protocol error and delivers none of it`, async () => {
        const { client, server, sent, listenerQueue, attacker } = await setup('aead-attack');
        assert.equal(await echoOf(client, 'before the attack'), 'before the attack');
        const received: Buffer[] = [];
        server.removeAllListeners('data');
        server.unpipe();
        server.on('data', (d: Buffer) => received.push(d));
        const failed = errorOf(server);
        const expected = server.bytesRead;
        const m = forge({ sent, expected });
        attacker.publish('', listenerQueue, m.body, { headers: m.headers });
        const err = await failed;
        assert.equal(err.code, 'ECONNRESET');
        assert.match(err.message, re);
        assert.deepEqual(received, [], 'bytes of the forged message reached the reader');
        // The client is told with a (tagged) reset, not left hanging.
        const clientErr = await errorOf(client);
        assert.match(clientErr.message, /the peer reset the stream: protocol error/);
      });
    }
  });

  it('refuses a secret shorter than 16 bytes and a secret with protocol v1, each in one sentence', async () => {
    await assert.rejects(connect(AMQP_URL, { secret: 'short' }), /the tunnel secret is 5 bytes long; use at least 16/);
    await assert.rejects(connect(AMQP_URL, { secret: SECRET, protocolVersion: 1 }), /a tunnel secret needs protocol v2/);
  });
});
