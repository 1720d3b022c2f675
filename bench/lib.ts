/**
 * npm run bench -- --lib: the stream library against baselines measured in the same
 * run on the same broker (AMQP_URL). Prints a table of figures and ratios.
 *
 * - bulk: 64 MiB one way through a stream, vs raw amqplib publishing the
 *   same bytes in 128 KiB messages to a queue and consuming them (the
 *   broker's own cost), vs a loopback TCP socket.
 * - round trip: 1-byte echo through a stream, vs a raw amqplib request/reply
 *   round trip through two queues.
 * - small writes: 10,000 writes of 20 bytes (a debugger's frames) through a
 *   stream, vs the same bytes in one write.
 * - memory: heap growth while 200 streams are open and idle.
 * - concurrency: BENCH_STREAMS (default 10,000) streams open at once on one
 *   client connection, each echoing its own data, and the channels that
 *   costs (the Go library needs two channels per stream and stops at ~1,023).
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import * as amqp from 'amqplib';
import { connect, type StreamSocket } from '../src/stream';

const URL_ = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const MiB = 1024 * 1024;
const BULK = 64 * MiB;
const q = (label: string): string => `bench-${label}-${process.pid}-${Date.now().toString(36)}`;
const ms = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1e6;

function drainAll(s: NodeJS.ReadableStream): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    s.on('data', (d: Buffer) => (n += d.length));
    s.once('end', () => resolve(n));
    s.once('error', reject);
  });
}

async function pump(s: NodeJS.WritableStream & { write(b: Buffer): boolean; end(): unknown }, total: number, block: Buffer): Promise<void> {
  for (let sent = 0; sent < total; sent += block.length) if (!s.write(block)) await once(s as never, 'drain');
  s.end();
}

async function streamBulk(): Promise<number> {
  const conn = await connect(URL_);
  const name = q('bulk');
  const server = conn.listen(name, (s) => void drainAll(s).then(() => s.end()));
  await once(server, 'listening');
  const sock = conn.connect(name);
  await once(sock, 'connect');
  const t = process.hrtime.bigint();
  const done = once(sock, 'close');
  sock.resume();
  await pump(sock, BULK, randomBytes(MiB));
  await done;
  const took = ms(t);
  await conn.close();
  return took;
}

async function rawBulk(): Promise<number> {
  const c = await amqp.connect(URL_);
  const pub = await c.createConfirmChannel();
  const sub = await c.createChannel();
  await sub.prefetch(64);
  const { queue } = await sub.assertQueue('', { exclusive: true, autoDelete: true });
  const block = randomBytes(128 * 1024);
  let got = 0;
  const all = new Promise<void>((resolve) => {
    void sub.consume(queue, (m) => {
      if (!m) return;
      got += m.content.length;
      sub.ack(m);
      if (got >= BULK) resolve();
    });
  });
  const t = process.hrtime.bigint();
  for (let sent = 0; sent < BULK; sent += block.length) {
    if (!pub.publish('', queue, block, { deliveryMode: 1, mandatory: true })) await once(pub, 'drain');
  }
  await all;
  const took = ms(t);
  await c.close();
  return took;
}

async function tcpBulk(): Promise<number> {
  const server = net.createServer((s) => void drainAll(s).then(() => s.end()));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(sock, 'connect');
  const t = process.hrtime.bigint();
  const done = once(sock, 'close');
  sock.resume();
  await pump(sock, BULK, randomBytes(MiB));
  await done;
  const took = ms(t);
  server.close();
  return took;
}

async function streamRoundTrip(n: number): Promise<number> {
  const conn = await connect(URL_);
  const name = q('rtt');
  const server = conn.listen(name, (s) => s.pipe(s));
  await once(server, 'listening');
  const sock = conn.connect(name);
  await once(sock, 'connect');
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    sock.write('x');
    await once(sock, 'data');
  }
  const took = ms(t) / n;
  sock.destroy();
  await conn.close();
  return took;
}

async function rawRoundTrip(n: number): Promise<number> {
  const c = await amqp.connect(URL_);
  const ch = await c.createChannel();
  const a = (await ch.assertQueue('', { exclusive: true, autoDelete: true })).queue;
  const b = (await ch.assertQueue('', { exclusive: true, autoDelete: true })).queue;
  await ch.consume(a, (m) => m && ch.sendToQueue(b, m.content), { noAck: true });
  let next: (() => void) | undefined;
  await ch.consume(b, () => next?.(), { noAck: true });
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const got = new Promise<void>((r) => (next = r));
    ch.sendToQueue(a, Buffer.from('x'));
    await got;
  }
  const took = ms(t) / n;
  await c.close();
  return took;
}

async function smallWrites(coalesce: boolean): Promise<number> {
  const conn = await connect(URL_);
  const name = q('small');
  const frames = Array.from({ length: 10_000 }, (_, i) => Buffer.from(`{"id":${i},"m":"step"}`.padEnd(20)));
  const expected = createHash('sha256').update(Buffer.concat(frames)).digest('hex');
  let sha = '';
  const server = conn.listen(name, (s) => {
    const h = createHash('sha256');
    s.on('data', (d: Buffer) => h.update(d));
    s.on('end', () => {
      sha = h.digest('hex');
      s.end();
    });
  });
  await once(server, 'listening');
  const sock: StreamSocket = conn.connect(name);
  await once(sock, 'connect');
  sock.resume();
  const t = process.hrtime.bigint();
  const done = once(sock, 'close');
  if (coalesce) for (const f of frames) sock.write(f);
  else sock.write(Buffer.concat(frames));
  sock.end();
  await done;
  const took = ms(t);
  if (sha !== expected) throw new Error('small writes arrived corrupted');
  await conn.close();
  return took;
}

/** 10,000 frames as 10,000 messages with raw amqplib: what a stream without coalescing would cost. */
async function rawSmallMessages(): Promise<number> {
  const c = await amqp.connect(URL_);
  const ch = await c.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
  let got = 0;
  const all = new Promise<void>((resolve) => {
    void ch.consume(queue, () => {
      if (++got === 10_000) resolve();
    }, { noAck: true });
  });
  const t = process.hrtime.bigint();
  for (let i = 0; i < 10_000; i++) ch.sendToQueue(queue, Buffer.from(`{"id":${i},"m":"step"}`.padEnd(20)));
  await all;
  const took = ms(t);
  await c.close();
  return took;
}

async function idleMemory(): Promise<number> {
  const conn = await connect(URL_);
  const name = q('mem');
  const server = conn.listen(name, () => undefined);
  await once(server, 'listening');
  global.gc?.();
  const before = process.memoryUsage().heapUsed;
  const socks = await Promise.all(
    Array.from({ length: 200 }, async () => {
      const s = conn.connect(name);
      await once(s, 'connect');
      return s;
    }),
  );
  global.gc?.();
  const per = (process.memoryUsage().heapUsed - before) / 200 / 2; // both ends live in this process
  for (const s of socks) s.destroy();
  await conn.close();
  return per;
}

/** The channels the broker counts for the connection named `name` (rabbitmqctl), or NaN. */
function brokerChannels(name: string): number {
  try {
    const rows = JSON.parse(execFileSync('rabbitmqctl', ['list_connections', 'name', 'channels', 'client_properties', '-q', '--formatter', 'json'], { encoding: 'utf8' })) as Array<{
      channels: number;
      client_properties: Array<[string, string, unknown]>;
    }>;
    return rows.find((r) => r.client_properties.some(([k, , v]) => k === 'connection_name' && v === name))?.channels ?? NaN;
  } catch {
    return NaN;
  }
}

async function concurrent(n: number): Promise<{ openMs: number; echoMs: number; channels: number }> {
  const serverName = q('many-server');
  const clientName = q('many-client');
  const sc = await connect(URL_, { connectionName: serverName });
  const cc = await connect(URL_, { connectionName: clientName });
  const name = q('many');
  const server = sc.listen(name, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await once(server, 'listening');
  const t = process.hrtime.bigint();
  const socks: StreamSocket[] = [];
  for (let i = 0; i < n; i += 500) {
    const batch = Array.from({ length: Math.min(500, n - i) }, async () => {
      const s = cc.connect(name);
      s.on('error', () => undefined);
      await once(s, 'connect');
      return s;
    });
    socks.push(...(await Promise.all(batch)));
  }
  const openMs = ms(t);
  const t2 = process.hrtime.bigint();
  const ok = await Promise.all(
    socks.map(async (s, i) => {
      const got = once(s, 'data');
      s.write(`stream ${i}`);
      return String((await got)[0]) === `stream ${i}`;
    }),
  );
  const echoMs = ms(t2);
  if (!ok.every(Boolean)) throw new Error('a concurrent stream echoed the wrong data');
  const channels = brokerChannels(clientName);
  await cc.close();
  await sc.close();
  return { openMs, echoMs, channels };
}

async function main(): Promise<void> {
  const rows: Array<[string, string, string]> = [];
  const mbps = (msTaken: number): string => `${((BULK / MiB) / (msTaken / 1000)).toFixed(0)} MiB/s`;
  const raw = await rawBulk();
  const stream = await streamBulk();
  const tcp = await tcpBulk();
  rows.push(['bulk 64 MiB: raw amqplib publish+consume (baseline)', mbps(raw), '1.00']);
  rows.push(['bulk 64 MiB: stream', mbps(stream), (raw / stream).toFixed(2)]);
  rows.push(['bulk 64 MiB: loopback TCP (for scale)', mbps(tcp), (raw / tcp).toFixed(2)]);
  const rawRtt = await rawRoundTrip(500);
  const rtt = await streamRoundTrip(500);
  rows.push(['round trip: raw amqplib queue->queue (baseline)', `${rawRtt.toFixed(3)} ms`, '1.00']);
  rows.push(['round trip: stream echo', `${rtt.toFixed(3)} ms`, (rtt / rawRtt).toFixed(2)]);
  const one = await smallWrites(false);
  const many = await smallWrites(true);
  rows.push(['10,000 x 20-byte frames as one write (baseline)', `${one.toFixed(1)} ms`, '1.00']);
  rows.push(['10,000 x 20-byte frames as separate writes', `${many.toFixed(1)} ms`, (many / one).toFixed(2)]);
  const rawSmall = await rawSmallMessages();
  rows.push(['10,000 x 20-byte frames as raw amqplib messages', `${rawSmall.toFixed(1)} ms`, (rawSmall / one).toFixed(2)]);
  const mem = await idleMemory();
  rows.push(['heap per idle stream end (200 streams)', `${(mem / 1024).toFixed(1)} KiB`, '-']);
  const n = Number(process.env.BENCH_STREAMS ?? 10_000);
  const conc = await concurrent(n);
  rows.push([`${n} concurrent streams: open, per stream`, `${(conc.openMs / n).toFixed(2)} ms`, '-']);
  rows.push([`${n} concurrent streams: one echo each, all at once`, `${conc.echoMs.toFixed(0)} ms`, '-']);
  rows.push([`${n} concurrent streams: channels on the client connection`, String(conc.channels), (conc.channels / (2 * n)).toFixed(4)]);
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`${'measurement'.padEnd(w)}  ${'value'.padStart(14)}  ratio`);
  for (const [k, v, r] of rows) console.log(`${k.padEnd(w)}  ${v.padStart(14)}  ${r}`);
  console.log('\nratios: throughput as baseline time / time (higher is faster); times as time / baseline (lower is better);');
  console.log('channels as a fraction of the Go library\'s two per stream');
}

export function runLibBench(): void {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  });
}
