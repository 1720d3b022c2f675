/**
 * The user's side of every benchmark row: a TCP client in the benchmark
 * process talking to the target service (bench/target.ts), either directly
 * or through whatever listens on `port` (the forward end of a CLI pair).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { patternDigest, writePattern } from './pattern';

const now = (): bigint => process.hrtime.bigint();
const msSince = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1e6;

export async function dial(port: number): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await once(s, 'connect');
  return s;
}

/** Read until `n` bytes have arrived (extra bytes are an error), resolving with their SHA-256 when asked. */
function readExactly(s: net.Socket, n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (d: Buffer): void => {
      got += d.length;
      if (got > n) fail(new Error(`got ${got} bytes, expected ${n}`));
      else if (got === n) done();
    };
    const onEnd = (): void => fail(new Error(`the connection ended after ${got} of ${n} bytes`));
    const onError = (err: Error): void => fail(err);
    const off = (): void => {
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('error', onError);
    };
    const done = (): void => {
      off();
      resolve();
    };
    const fail = (err: Error): void => {
      off();
      reject(err);
    };
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', onError);
  });
}

async function closed(s: net.Socket): Promise<void> {
  if (!s.closed) await once(s, 'close');
}

/** Upload `n` bytes to the sink; the SHA-256 it answers must match. Milliseconds from dialling to the answer. */
export async function upload(port: number, n: number): Promise<number> {
  const t = now();
  const s = await dial(port);
  const answer = new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
  s.write('S');
  await writePattern(s, n);
  s.end();
  const digest = (await answer).toString('hex');
  const ms = msSince(t);
  if (digest !== patternDigest(n)) throw new Error(`upload of ${n} bytes arrived corrupted (SHA-256 differs)`);
  await closed(s);
  return ms;
}

function lengthRequest(n: number): Buffer {
  const b = Buffer.alloc(9);
  b.write('D');
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

/** Download `n` bytes from the source and check their SHA-256. Milliseconds from dialling to the end. */
export async function download(port: number, n: number): Promise<number> {
  const t = now();
  const s = await dial(port);
  const h = createHash('sha256');
  let got = 0;
  s.on('data', (d: Buffer) => {
    got += d.length;
    h.update(d);
  });
  s.write(lengthRequest(n));
  await once(s, 'end');
  const ms = msSince(t);
  s.end();
  if (got !== n || h.digest('hex') !== patternDigest(n)) throw new Error(`download of ${n} bytes arrived corrupted (${got} bytes, SHA-256 differs)`);
  await closed(s);
  return ms;
}

/** Download `n` bytes, reading at most `bytesPerSecond`. Milliseconds taken. */
export async function slowDownload(port: number, n: number, bytesPerSecond: number): Promise<number> {
  const t = now();
  const s = await dial(port);
  const h = createHash('sha256');
  let got = 0;
  let timer: NodeJS.Timeout | undefined;
  s.on('data', (d: Buffer) => {
    got += d.length;
    h.update(d);
    const due = (got / bytesPerSecond) * 1000 - msSince(t);
    if (due > 1 && !timer) {
      s.pause();
      timer = setTimeout(() => {
        timer = undefined;
        s.resume();
      }, due);
    }
  });
  s.write(lengthRequest(n));
  await once(s, 'end');
  const ms = msSince(t);
  s.end();
  if (got !== n || h.digest('hex') !== patternDigest(n)) throw new Error(`slow download of ${n} bytes arrived corrupted`);
  await closed(s);
  return ms;
}

/**
 * Round trips of `size` bytes on one echo connection: `warmup` unrecorded,
 * then `n` recorded (ms each). `stop` ends the loop early (for load runs).
 */
export async function roundTrips(port: number, size: number, n: number, warmup: number, stop?: () => boolean): Promise<number[]> {
  const s = await dial(port);
  s.write('E');
  const body = Buffer.alloc(size, 120);
  const samples: number[] = [];
  for (let i = 0; i < warmup + n && !(stop?.() ?? false); i++) {
    const t = now();
    const got = readExactly(s, size);
    s.write(body);
    await got;
    if (i >= warmup) samples.push(msSince(t));
  }
  s.end();
  await closed(s);
  return samples;
}

/**
 * Request/response round trips where both sides write a message in two
 * pieces (16-byte header, then 1,008 bytes, a tick apart), as a debug adapter
 * does, and the target answers only whole requests: Nagle's algorithm on any
 * TCP hop turns this into a ~40 ms stall (delayed ACK).
 */
export async function splitRoundTrips(port: number, n: number, warmup: number): Promise<number[]> {
  const s = await dial(port);
  s.write('R');
  const header = Buffer.alloc(16, 72);
  const body = Buffer.alloc(1008, 66);
  const samples: number[] = [];
  for (let i = 0; i < warmup + n; i++) {
    const t = now();
    const got = readExactly(s, 1024);
    s.write(header);
    await new Promise((resolve) => setImmediate(resolve));
    s.write(body);
    await got;
    if (i >= warmup) samples.push(msSince(t));
  }
  s.end();
  s.resume();
  await closed(s);
  return samples;
}

/** `n` connections one after another: ms from dialling to the first echoed byte, each. */
export async function connectEcho(port: number, n: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    s.write('Ex');
    await readExactly(s, 1);
    samples.push(msSince(t));
    s.end();
    s.resume();
    await closed(s);
  }
  return samples;
}

/** `k` connections at once, each echoing `size` bytes of the pattern (checked). Ms until all are done. */
export async function concurrentEcho(port: number, k: number, size: number): Promise<number> {
  const t = now();
  const expected = patternDigest(size);
  await Promise.all(
    Array.from({ length: k }, async () => {
      const s = await dial(port);
      const h = createHash('sha256');
      let got = 0;
      const all = new Promise<void>((resolve, reject) => {
        s.on('data', (d: Buffer) => {
          h.update(d);
          got += d.length;
          if (got >= size) resolve();
        });
        s.once('error', reject);
        s.once('end', () => (got < size ? reject(new Error(`echo ended after ${got} of ${size} bytes`)) : resolve()));
      });
      s.write('E');
      await writePattern(s, size);
      await all;
      if (h.digest('hex') !== expected) throw new Error('a concurrent echo arrived corrupted');
      s.end();
      await closed(s);
    }),
  );
  return msSince(t);
}

/**
 * Downloads of `each` bytes, one after another on new connections, until
 * `stop` resolves (the one under way is then aborted). Each is bounded, so a
 * tunnel without flow control never queues more than `each` at the broker.
 * Resolves with the bytes received.
 */
export async function backgroundDownloads(port: number, each: number, stop: Promise<void>): Promise<number> {
  return background(port, each, stop, (s) => {
    s.write(lengthRequest(each));
  });
}

/** Uploads of `each` bytes to the sink, one after another, until `stop` resolves. Resolves with the bytes sent. */
export async function backgroundUploads(port: number, each: number, stop: Promise<void>): Promise<number> {
  return background(port, each, stop, (s) => {
    s.write('S');
    void writePattern(s, each).then(
      () => s.end(),
      () => undefined,
    );
  });
}

async function background(port: number, each: number, stop: Promise<void>, start: (s: net.Socket) => void): Promise<number> {
  let stopped = false;
  let current: net.Socket | undefined;
  void stop.then(() => {
    stopped = true;
    current?.destroy();
  });
  let total = 0;
  while (!stopped) {
    const s = await dial(port);
    current = s;
    s.on('error', () => undefined);
    let got = 0;
    s.on('data', (d: Buffer) => (got += d.length));
    start(s);
    if (stopped) s.destroy();
    await closedOrEnded(s);
    total += Math.max(got, s.bytesWritten - 1);
    s.destroy();
  }
  return total;
}

async function closedOrEnded(s: net.Socket): Promise<void> {
  if (s.destroyed) return;
  await Promise.race([once(s, 'end'), once(s, 'close')]).catch(() => undefined);
}
