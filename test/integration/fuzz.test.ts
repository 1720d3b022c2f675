/**
 * Bad input: more than 10,000 malformed messages, published with raw
 * amqplib into a listener's control queue and into a live stream's data
 * queue, while real streams keep working on the same connections.
 *
 * What a user relies on, and what this checks:
 * - the listener keeps serving new streams during and after the flood, and
 *   announces no stream for a request that no client is waiting on;
 * - nothing stays unacknowledged on the control queue;
 * - memory stays bounded, and no socket is left behind;
 * - a stream that is not targeted delivers its data intact (SHA-256);
 * - the targeted stream ignores what is not data for its version, delivers
 *   exactly what is, and a reset resets it with a short printable reason;
 * - the log gets one line per kind of problem, not one per message.
 * With `seq`, every kind of out-of-place offset resets the stream before a
 * byte of it is delivered. A header nested thousands of tables deep (an
 * amqplib limit) costs a publish tunnel one reconnect, no more.
 *
 * The generator is seeded (FUZZ_SEED=n to replay a run; the seed is printed).
 */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { promisify } from 'node:util';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import * as amqp from 'amqplib';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { connect, type Connection, type Logger, type StreamServer, type StreamSocket } from '../../src/stream';
import { FEATURES_HEADER, peerFeatures } from '../../src/stream/protocol';
import { publish } from '../../src/tunnel';
import { AMQP_URL, digestAll, echoServer, queueCounts, readAll, uniqueQueue } from './support';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;

/** mulberry32: a small seeded generator, so a failing run can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const bytes = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    return b;
  };
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  return { next, int, bytes, pick };
}
type Rng = ReturnType<typeof prng>;

/** Every header the v2 specification names, except reset and ping (their effect is asserted on their own). */
const STREAM_HEADERS = [
  'x-amqp-stream-version',
  'x-amqp-stream-features',
  'x-amqp-stream-offset',
  'x-amqp-stream-credit',
  'x-amqp-stream-window',
  'x-amqp-stream-presence',
  'x-amqp-stream-nonce',
  'x-amqp-stream-proof',
  'x-amqp-stream-auth',
  'x-amqp-stream-refused',
  'x-amqp-stream-resume',
  'x-amqp-stream-resumed',
  'x-amqp-stream-retransmit',
  'x-amqp-stream-tag',
] as const;
/** Headers that make an empty message a handshake, and so never an end of stream under v2. */
const HANDSHAKE_HEADERS = ['x-amqp-stream-version', 'x-amqp-stream-features'] as const;

/** A header value of any type AMQP tables carry, with the awkward cases weighted in. */
function garbageValue(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 1 ? 11 : 13)) {
    case 0:
      return r.int(2 ** 31) - 2 ** 30;
    case 1:
      return r.pick([0, -1, 1, 2, 3, 255, 2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 62]);
    case 2:
      return (r.next() - 0.5) * 1e9; // a double
    case 3:
      return r.bytes(r.int(64)).toString('latin1'); // control characters, commas, anything
    case 4:
      return 'x'.repeat(r.int(4096)); // long
    case 5:
      return r.bytes(r.int(256)); // a byte array
    case 6:
      return r.pick(['seq', 'seq,credit,presence,auth,aead,resume', ',,,', 'SEQ', ' seq , 💥 ,', 'resume'.repeat(500), '2', '-1', '1e3']);
    case 7:
      return r.next() < 0.5;
    case 8:
      return null;
    case 9:
      return { '!': 'timestamp', value: r.int(2 ** 31) };
    case 10:
      return { '!': 'decimal', value: { places: r.int(10), digits: r.int(2 ** 31) } };
    case 11:
      return { 'x-amqp-stream-version': 2, nested: garbageValue(r, depth + 1), n: r.int(100) }; // a table
    default:
      return [garbageValue(r, depth + 1), garbageValue(r, depth + 1), 'seq']; // an array
  }
}

/** Up to four headers: spec names with garbage values, and now and then a name nobody defined. */
function garbageHeaders(r: Rng, names: readonly string[] = STREAM_HEADERS): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  const n = r.int(5);
  for (let i = 0; i < n; i++) {
    const name = r.next() < 0.1 ? `x-amqp-stream-${r.bytes(3).toString('hex')}` : r.pick(names);
    headers[name] = garbageValue(r);
  }
  return headers;
}

interface Capture extends Logger {
  warnings: string[];
}
function captureLogger(): Capture {
  const warnings: string[] = [];
  return {
    warnings,
    debug: () => undefined,
    info: () => undefined,
    warn: (m) => warnings.push(m),
    error: (m) => warnings.push(m),
  };
}

/** One echo round trip on a new stream: the bytes must come back exactly. */
async function echoOnce(conn: Connection, queue: string, label: string): Promise<void> {
  const sock = conn.connect(queue);
  const payload = Buffer.concat([Buffer.from(`${label}:`), randomBytes(2048)]);
  const got = readAll(sock);
  sock.end(payload);
  assert.deepEqual(await got, payload, `echo ${label} came back different`);
}

/** Resolves when `predicate` holds, checking every `everyMs`; rejects after `timeoutMs` with `what`. */
async function until(what: string, predicate: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const trace = process.env.FUZZ_TRACE ? (m: string) => console.log(`      [${new Date().toISOString().slice(11, 23)}] ${m}`) : () => undefined;

describe('bad input: 10,000+ malformed messages on a control queue and a data queue (real broker)', function () {
  this.timeout(120_000);
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  /** Set when the test is over, so a failed run's producers stop instead of flooding the cleanup. */
  let stop = false;
  after(async () => {
    stop = true;
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });
  let accepted: StreamSocket[] = [];
  afterEach(() => {
    // A failed run may leave streams open; the server's close() would wait for them.
    for (const s of accepted) s.destroy();
  });

  it('keeps serving, acks every control message, stays bounded, keeps other streams intact and logs each kind of problem once', async () => {
    console.log(`      fuzz seed ${seed} (FUZZ_SEED=${seed} replays it)`);
    // One generator per producer: they interleave differently from run to run, each sequence does not.
    const r = prng(seed);
    const rData = prng(seed ^ 0x5bd1e995);
    const rRaw = prng(seed ^ 0x27d4eb2f);
    const queue = uniqueQueue('fuzz');

    // ---- the listener, the clients, and the raw publisher ---------------
    const serverLog = captureLogger();
    const clientLog = captureLogger();
    const plainLog = captureLogger();
    const serverConn = await connect(AMQP_URL, { logger: serverLog, connectionName: uniqueQueue('fuzz-server') });
    cleanups.push(() => serverConn.close());
    const clientConn = await connect(AMQP_URL, { logger: clientLog, connectionName: uniqueQueue('fuzz-client') });
    cleanups.push(() => clientConn.close());
    // The targeted stream speaks plain v2 (no optional feature): what it must
    // ignore and what it must take as data is fixed by that version alone.
    const plainConn = await connect(AMQP_URL, { logger: plainLog, features: [], connectionName: uniqueQueue('fuzz-plain') });
    cleanups.push(() => plainConn.close());

    accepted = [];
    const acceptedErrors: Error[] = [];
    const server: StreamServer = serverConn.createServer({}, (s) => {
      accepted.push(s);
      s.on('error', (err) => acceptedErrors.push(err));
      s.pipe(s);
    });
    server.listen(queue);
    await once(server, 'listening');
    // Not awaited: close() waits for every accepted stream, and closing the connection ends them.
    cleanups.push(() => void server.close());

    const raw = await amqp.connect(AMQP_URL, { clientProperties: { connection_name: uniqueQueue('fuzz-raw') } });
    cleanups.push(() => raw.close().catch(() => undefined));
    const pub: ConfirmChannel = await raw.createConfirmChannel();
    const rawIn = await raw.createChannel();
    let published = 0;
    /** Publish without mandatory (a dead target queue simply drops it), and wait for the broker now and then. */
    async function send(to: string, body: Buffer, options: Options.Publish): Promise<void> {
      pub.sendToQueue(to, body, { deliveryMode: 1, ...options });
      if (++published % 250 === 0) await pub.waitForConfirms();
    }

    await echoOnce(clientConn, queue, 'warm-up');
    gc();
    const before = process.memoryUsage();

    // ---- an untargeted transfer that runs through the whole flood -------
    let fuzzing = true;
    const untargeted = clientConn.connect(queue);
    await once(untargeted, 'connect');
    const sentHash = createHash('sha256');
    let sentBytes = 0;
    const received = digestAll(untargeted);
    const writer = (async () => {
      let i = 0;
      while ((fuzzing || sentBytes < 2 * MiB) && !stop) {
        const chunk = Buffer.alloc(32 * 1024, i++ & 0xff);
        chunk.writeUInt32BE(i, 0);
        sentHash.update(chunk);
        sentBytes += chunk.length;
        if (!untargeted.write(chunk)) await once(untargeted, 'drain');
        // Paced (about 3 MB/s), so the transfer spans the flood without starving it of CPU.
        await new Promise((res) => setTimeout(res, 10));
      }
      untargeted.end();
    })();

    // ---- new streams keep being served during the flood ------------------
    let servedDuring = 0;
    const prober = (async () => {
      while (fuzzing && !stop) {
        await echoOnce(clientConn, queue, `during-${servedDuring}`);
        servedDuring++;
      }
    })();

    // ---- the targeted stream ---------------------------------------------
    const target = plainConn.connect(queue);
    await once(target, 'connect');
    assert.equal(target.protocolVersion, 2);
    assert.equal(target.features.size, 0);
    const targetQueue = new URL(target.localAddress!).searchParams.get('local_queue')!;
    const targetChunks: Buffer[] = [];
    let targetBytes = 0;
    let onTargetData: (() => void) | undefined;
    target.on('data', (c: Buffer) => {
      targetChunks.push(c);
      targetBytes += c.length;
      onTargetData?.();
    });
    let targetGone: string | undefined;
    target.once('end', () => {
      targetGone ??= 'ended, as if its peer had closed it,';
      onTargetData?.();
    });
    target.once('close', () => {
      targetGone ??= 'closed';
      onTargetData?.();
    });
    const targetError = new Promise<Error & { code?: string }>((res) => target.once('error', res));
    /** Resolves once the stream has delivered `n` bytes in all; rejects if it ends or closes first. */
    const delivered = async (n: number): Promise<void> => {
      while (targetBytes < n) {
        if (targetGone) throw new Error(`the targeted stream ${targetGone} after ${targetBytes} bytes; ${n} were due`);
        await new Promise<void>((res) => (onTargetData = res));
      }
    };

    // ---- raw clients with garbage in their handshake still get a stream ---
    async function rawClient(i: number): Promise<void> {
      const { queue: mine } = await rawIn.assertQueue('', { exclusive: true, autoDelete: true });
      const inbox: ConsumeMessage[] = [];
      let wake: (() => void) | undefined;
      const { consumerTag } = await rawIn.consume(mine, (m) => {
        if (!m) return;
        rawIn.ack(m);
        if (m.properties.headers?.['x-amqp-stream-ping'] !== undefined) return; // a v2 listener's liveness probe
        inbox.push(m);
        wake?.();
      });
      const next = async (): Promise<ConsumeMessage> => {
        while (inbox.length === 0) await new Promise<void>((res) => (wake = res));
        return inbox.shift()!;
      };
      // Garbage, not a feature request: a value that happens to parse as one (" seq , 💥 ,"
      // is `seq`) would oblige this raw v1-style client to speak that feature.
      let features = garbageValue(rRaw);
      if (peerFeatures({ [FEATURES_HEADER]: features }).size > 0) features = 'x-no-such-feature';
      const headers: Record<string, unknown> = { ...garbageHeaders(rRaw, HANDSHAKE_HEADERS), [FEATURES_HEADER]: features };
      if (i % 2 === 0) headers['x-amqp-stream-version'] = 2;
      await send(queue, Buffer.alloc(0), { replyTo: mine, headers });
      const reply = await next();
      assert.equal(reply.content.length, 0, 'the handshake reply has an empty body');
      assert.match(String(reply.properties.replyTo), /^amq\.gen-/, 'the handshake reply names the listener side queue');
      const payload = Buffer.from(`raw client ${i} with garbage headers`);
      await send(reply.properties.replyTo as string, payload, {});
      await send(reply.properties.replyTo as string, Buffer.alloc(0), {});
      const echoed = await next();
      assert.deepEqual(echoed.content, payload);
      const end = await next();
      assert.equal(end.content.length, 0, 'the listener ends the stream after the echo');
      await rawIn.cancel(consumerTag);
    }

    // ---- the flood -----------------------------------------------------
    const CONTROL_MESSAGES = 6_000;
    const RAW_CLIENTS = 20;
    const counts: Record<string, number> = {};
    const count = (k: string): void => void (counts[k] = (counts[k] ?? 0) + 1);
    const rawClients: Array<Promise<void>> = [];
    const control = (async () => {
      for (let i = 0; i < CONTROL_MESSAGES && !stop; i++) {
        const dice = r.int(100);
        if (i % (CONTROL_MESSAGES / RAW_CLIENTS) === 0) {
          count('raw client with garbage headers');
          rawClients.push(rawClient(rawClients.length));
        } else if (i % 300 === 150) {
          count('oversized body');
          await send(queue, r.bytes(MiB + r.int(MiB)), { replyTo: `amq.gen-${r.bytes(8).toString('hex')}`, headers: garbageHeaders(r) });
        } else if (dice < 35) {
          count('random body');
          await send(queue, r.bytes(1 + r.int(2048)), r.next() < 0.5 ? { headers: garbageHeaders(r) } : { replyTo: targetQueue });
        } else if (dice < 60) {
          count('no reply-to');
          await send(queue, Buffer.alloc(0), { headers: garbageHeaders(r) });
        } else if (dice < 70) {
          count('empty reply-to');
          await send(queue, Buffer.alloc(0), { replyTo: '', headers: garbageHeaders(r) });
        } else if (dice < 75) {
          count('reply-to the control queue itself');
          await send(queue, Buffer.alloc(0), { replyTo: queue, headers: garbageHeaders(r) });
        } else if (dice < 80) {
          count('reply-to a queue that does not exist');
          await send(queue, Buffer.alloc(0), { replyTo: `amq.gen-${r.bytes(8).toString('hex')}`, headers: garbageHeaders(r) });
        } else {
          count('garbage headers, no reply-to, random properties');
          await send(queue, r.next() < 0.5 ? Buffer.alloc(0) : r.bytes(r.int(64)), {
            headers: garbageHeaders(r),
            correlationId: r.bytes(4).toString('hex'),
            expiration: r.next() < 0.5 ? String(r.int(10_000)) : undefined,
            priority: r.int(10),
            type: 'x-amqp-stream',
          });
        }
      }
      await pub.waitForConfirms();
    })();

    // Phase 1: what is not data for plain v2: pings (with or without a body,
    // any value) and handshake replies to a stream that never asked.
    const HARMLESS = 2_000;
    const DATA_LIKE = 2_400;
    const dataExpected: Buffer[] = [];
    const data = (async () => {
      for (let i = 0; i < HARMLESS && !stop; i++) {
        if (i % 2 === 0) {
          count('ping on the data queue');
          const headers = { ...garbageHeaders(rData), 'x-amqp-stream-ping': garbageValue(rData) };
          await send(targetQueue, rData.next() < 0.5 ? Buffer.alloc(0) : rData.bytes(1 + rData.int(512)), { headers });
        } else {
          count('handshake reply to a stream that never asked');
          const replyTo = rData.pick([`amq.gen-${rData.bytes(8).toString('hex')}`, '', queue, targetQueue]);
          await send(targetQueue, Buffer.alloc(0), { replyTo, headers: garbageHeaders(rData, HANDSHAKE_HEADERS) });
        }
      }
      await pub.waitForConfirms();
      trace('phase 1 sent');
      // Everything above is in the queue ahead of this echo: when it is back, all of it has been read.
      target.write('checkpoint-1|');
      await delivered(13);
      assert.equal(Buffer.concat(targetChunks).toString(), 'checkpoint-1|', 'the targeted stream delivered bytes of messages that are not data');
      assert.ok(!target.destroyed && target.readable, 'harmless junk ended or destroyed the targeted stream');

      // Phase 2: bodies without a reset or ping header ARE data under plain v2
      // (telling a stranger's body from the peer's needs `seq`): they must
      // arrive complete and in order, whatever headers ride along, at any size.
      for (let i = 0; i < DATA_LIKE && !stop; i++) {
        count('body with garbage headers on the data queue');
        const body = i % 400 === 399 ? rData.bytes(MiB + rData.int(MiB)) : rData.bytes(1 + rData.int(4096));
        dataExpected.push(body);
        await send(targetQueue, body, { headers: garbageHeaders(rData) });
      }
      await pub.waitForConfirms();
      trace('phase 2 sent');
      target.write('checkpoint-2|');
      const expected = Buffer.concat([Buffer.from('checkpoint-1|'), ...dataExpected, Buffer.from('checkpoint-2|')]);
      await delivered(expected.length);
      assert.ok(Buffer.concat(targetChunks).equals(expected), 'the targeted stream lost, reordered or altered data');

      // Phase 3: a reset, with a hostile reason: the stream fails at once with a
      // short, printable reason; the rest lands in a queue that is gone.
      count('reset with a hostile reason');
      await send(targetQueue, rData.bytes(100), {
        headers: { 'x-amqp-stream-reset': `evil\nFAKE LOG LINE ${'x'.repeat(10_000)}`, ...garbageHeaders(rData) },
      });
      for (let i = 0; i < 99; i++) {
        count('message to the reset stream');
        await send(targetQueue, rData.bytes(rData.int(100)), { headers: garbageHeaders(rData) });
      }
      await pub.waitForConfirms();
    })();

    await Promise.all([control, data]);
    trace('flood sent');
    await Promise.all(rawClients);
    fuzzing = false;
    await Promise.all([writer, prober]);
    trace('transfer and probes done');
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    console.log(`      ${total} malformed messages: ${JSON.stringify(counts)}`);
    console.log(`      meanwhile: ${servedDuring} new streams served, ${(sentBytes / MiB).toFixed(1)} MiB through the untargeted stream`);
    assert.ok(total >= 10_000, `only ${total} messages were sent`);

    // ---- the targeted stream was reset, with a reason fit for a log ------
    const err = await targetError;
    assert.equal(err.code, 'ECONNRESET');
    assert.match(err.message, /the peer reset the stream: /);
    assert.ok(!err.message.includes('\n'), 'a reset reason from the wire put a newline into an error message');
    assert.ok(err.message.length < 400, `the error message is ${err.message.length} characters long`);

    // ---- the untargeted transfer is intact -----------------------------------
    const got = await received;
    assert.equal(got.bytes, sentBytes);
    assert.equal(got.sha, sentHash.digest('hex'), 'the untargeted stream delivered different bytes');

    // ---- the listener still serves, and nothing waits unacknowledged --------
    assert.ok(servedDuring >= 1, 'no stream was served during the flood');
    await echoOnce(clientConn, queue, 'after');
    await echoOnce(plainConn, queue, 'after-plain');
    await until(
      'the control queue to be empty with nothing unacknowledged',
      async () => {
        const c = await queueCounts(queue);
        return c.messages === 0 && c.unacknowledged === 0;
      },
      30_000,
      500,
    );
    for (const c of [serverConn, clientConn, plainConn]) assert.ok(c.isOpen, 'a broker connection was lost to the flood');

    // ---- no stream was announced for a request nobody waits on -----------------
    // Streams that really had a client: the untargeted one, the probes, the
    // targeted one, the raw clients, the warm-up and the two after the flood.
    const real = 1 + servedDuring + 1 + RAW_CLIENTS + 1 + 2;
    assert.equal(
      accepted.length,
      real,
      `the listener announced ${accepted.length - real} streams for requests whose reply-to queue does not exist or is not a client`,
    );

    trace('checking memory');
    // ---- memory ---------------------------------------------------------------
    await until('every accepted stream to close', () => accepted.every((s) => s.destroyed), 10_000, 50);
    await until('the client sockets to close', () => clientConn.socketCount === 0 && plainConn.socketCount === 0, 10_000, 50);
    assert.equal(server.connectionCount, 0);
    gc();
    const afterFlood = process.memoryUsage();
    const heapGrowth = (afterFlood.heapUsed - before.heapUsed) / MiB;
    const rssGrowth = (afterFlood.rss - before.rss) / MiB;
    console.log(`      heap ${(before.heapUsed / MiB).toFixed(1)} -> ${(afterFlood.heapUsed / MiB).toFixed(1)} MiB, rss ${(before.rss / MiB).toFixed(1)} -> ${(afterFlood.rss / MiB).toFixed(1)} MiB`);
    assert.ok(heapGrowth < 16, `the heap grew by ${heapGrowth.toFixed(1)} MiB`);
    assert.ok(rssGrowth < 160, `the RSS grew by ${rssGrowth.toFixed(1)} MiB`);

    // ---- one log line per kind of problem ---------------------------------------
    const lines = [...serverLog.warnings, ...clientLog.warnings, ...plainLog.warnings];
    console.log(`      ${lines.length} log lines:\n${lines.map((l) => `        ${l.slice(0, 200)}`).join('\n')}`);
    // Six kinds can occur here (three of malformed request, no client, failed accept, stray handshake);
    // a kind still coming after a minute adds one count line.
    const countLines = lines.filter((l) => /not logged one by one/.test(l)).length;
    assert.ok(lines.length - countLines <= 6 && countLines <= 6, `${lines.length} warnings for ${total} malformed messages`);
    for (const l of lines) assert.ok(!l.includes('\n') && l.length < 600, `a log line is not one short line: ${l.slice(0, 100)}`);
    // Count lines (one per kind and minute, should the run last that long) are not first lines.
    const about = (re: RegExp, log: Capture): number => log.warnings.filter((l) => re.test(l) && !/not logged one by one/.test(l)).length;
    assert.equal(about(/body/, serverLog), 1, 'requests with a body: one line');
    assert.equal(about(/no reply-to/, serverLog), 1, 'requests without reply-to: one line');
    assert.equal(about(/does not exist/, serverLog), 1, 'requests whose reply-to queue does not exist: one line');
    assert.equal(about(/handshake/, plainLog), 1, 'stray handshakes on a stream: one line');
  });
  it('with seq, a data message out of place resets the stream with a protocol error, and none of its bytes reach the reader', async () => {
    const r = prng(seed ^ 0x68e31da4);
    const queue = uniqueQueue('fuzz-seq');
    const serverConn = await connect(AMQP_URL, { connectionName: uniqueQueue('fuzz-seq-server') });
    cleanups.push(() => serverConn.close());
    const clientConn = await connect(AMQP_URL, { connectionName: uniqueQueue('fuzz-seq-client') });
    cleanups.push(() => clientConn.close());
    const listenerErrors: Error[] = [];
    const server = serverConn.listen(queue, (s) => {
      s.on('error', (err) => listenerErrors.push(err));
      s.pipe(s);
    });
    await once(server, 'listening');
    const raw = await amqp.connect(AMQP_URL);
    cleanups.push(() => raw.close().catch(() => undefined));
    const pub = await raw.createConfirmChannel();

    // After 'abc' went there and back, the next byte the client expects is at offset 3.
    const wrong: Array<[string, Buffer, Record<string, unknown>]> = [
      ['no offset', r.bytes(64), garbageHeaders(r, ['x-amqp-stream-version', 'x-amqp-stream-features'])],
      ['a string offset', r.bytes(64), { 'x-amqp-stream-offset': 'three' }],
      ['a byte-array offset', r.bytes(64), { 'x-amqp-stream-offset': Buffer.from([3]) }],
      ['a table offset', r.bytes(64), { 'x-amqp-stream-offset': { offset: 3 } }],
      ['an array offset', r.bytes(64), { 'x-amqp-stream-offset': [3] }],
      ['a negative offset', r.bytes(64), { 'x-amqp-stream-offset': -3 }],
      ['a fractional offset', r.bytes(64), { 'x-amqp-stream-offset': 3.5 }],
      ['a duplicate (offset 0 again)', Buffer.from('abc'), { 'x-amqp-stream-offset': 0 }],
      ['an overlap (offset 2)', r.bytes(64), { 'x-amqp-stream-offset': 2 }],
      ['a gap (offset 4096)', r.bytes(64), { 'x-amqp-stream-offset': 4096 }],
      ['a huge offset', r.bytes(64), { 'x-amqp-stream-offset': 2 ** 62 }],
      ['an end at the wrong offset', Buffer.alloc(0), { 'x-amqp-stream-offset': 99 }],
      ['an end without offset', Buffer.alloc(0), {}],
    ];
    let sent = 0;
    for (const [what, body, headers] of wrong) {
      const s = clientConn.connect(queue);
      await once(s, 'connect');
      assert.ok(s.features.has('seq'), 'the stream does not use seq');
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      const failed = new Promise<Error & { code?: string }>((res) => s.once('error', res));
      s.write('abc');
      while (Buffer.concat(chunks).length < 3) await once(s, 'data');
      const own = new URL(s.localAddress!).searchParams.get('local_queue')!;
      // The out-of-place message, then more junk behind it that must not get through either.
      pub.sendToQueue(own, body, { deliveryMode: 1, headers });
      for (let i = 0; i < 49; i++) pub.sendToQueue(own, r.bytes(1 + r.int(512)), { deliveryMode: 1, headers: garbageHeaders(r) });
      sent += 50;
      await pub.waitForConfirms();
      const err = await failed;
      assert.equal(err.code, 'ECONNRESET', `${what}: ${err.message}`);
      assert.match(err.message, /protocol error/, what);
      assert.equal(Buffer.concat(chunks).toString('latin1'), 'abc', `${what}: bytes that were not the stream's reached the reader`);
    }
    assert.ok(sent >= 600);
    // The listener side of each stream was told (a reset), and the listener still serves.
    await until('the listener side to hear of every protocol error', () => listenerErrors.length >= wrong.length, 10_000, 50);
    for (const err of listenerErrors) assert.match(err.message, /protocol error/);
    await echoOnce(clientConn, queue, 'after-seq');
  });

  it('a message whose headers nest 8,000 tables deep does not take a publish tunnel down for more than a reconnect', async () => {
    // amqplib decodes header tables recursively: this overflows the stack of the
    // connection that receives it, and amqplib closes that connection (see
    // docs/protocol.md, "Malformed input"). What a user must still get: the
    // tunnel serves again. amqplib's encoder recurses too, so the message is
    // published from a process with a larger stack.
    const { port, close } = await echoServer();
    cleanups.push(close);
    const queue = uniqueQueue('fuzz-deep');
    const log = captureLogger();
    const tunnel = publish({ target: String(port), queue, broker: AMQP_URL, logger: log });
    cleanups.push(() => tunnel.stop());
    await tunnel.ready;
    const states: string[] = [];
    tunnel.on('state', (c: { state: string }) => states.push(c.state));
    const clientConn = await connect(AMQP_URL, { connectionName: uniqueQueue('fuzz-deep-client') });
    cleanups.push(() => clientConn.close());
    await echoOnce(clientConn, queue, 'before');
    const script = [
      "const amqp = require('amqplib');",
      'const [url, queue, depth] = process.argv.slice(1);',
      'let h = { leaf: 1 };',
      'for (let i = 0; i < Number(depth); i++) h = { a: h };',
      '(async () => { const c = await amqp.connect(url); const ch = await c.createConfirmChannel();',
      "  ch.sendToQueue(queue, Buffer.alloc(0), { replyTo: 'amq.gen-deep', headers: h }); await ch.waitForConfirms(); await c.close(); })()",
      '  .catch((e) => { console.error(e.message); process.exit(1); });',
    ].join('\n');
    await promisify(execFile)(process.execPath, ['--stack-size=4000', '-e', script, AMQP_URL, queue, '8000']);
    const sentAt = Date.now();
    // Served again: by the same connection if amqplib read the message, else after a reconnect.
    let lastError: unknown;
    await until(
      'the publish tunnel to serve again',
      async () => {
        try {
          await echoOnce(clientConn, queue, 'after');
          return true;
        } catch (err) {
          lastError = err;
          return false;
        }
      },
      15_000,
      100,
    ).catch((err: Error) => assert.fail(`${err.message}; last: ${String(lastError)}`));
    console.log(`      serving again ${Date.now() - sentAt} ms after the message; tunnel states: ${states.join(' -> ') || 'none'}`);
    console.log(`      ${log.warnings.filter((l) => /lost|stack/i.test(l)).slice(0, 2).join('\n      ')}`);
    // The echo can get through as the listener is back, a moment before the tunnel reports 'ready'.
    await until('the tunnel to report ready', () => tunnel.state === 'ready', 5000, 25).catch(() => undefined);
    assert.equal(tunnel.state, 'ready');
  });
});
