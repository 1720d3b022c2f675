/**
 * v2 `resume` through the CLI pair (processes), with a TCP fault proxy
 * between one CLI and RabbitMQ: TCP connections through the tunnel survive
 * broker connection cuts shorter than the grace period (nothing lost,
 * duplicated or reordered, never reset), and are reset once a cut outlasts
 * it, leaving no queue of the stream on the broker.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { FaultProxy } from './faultproxy';
import { Cli, spawnCli } from './clirunner';
import { CdpSession } from './cdp';
import { queueExists } from './support';

const BROKER = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const brokerPort = Number(new URL(BROKER).port || 5672);
let n = 0;
const uniqueQueue = (): string => `t-resume-${process.pid}-${Date.now()}-${n++}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Bytes per transfer (RESUME_TEST_MIB to try another size). */
const TOTAL = Number(process.env.RESUME_TEST_MIB ?? 256) * 1024 * 1024;
const CUT_MS = 5000;

/** A TCP server that hashes everything it receives and ends its side once the client ended. */
async function sinkServer(): Promise<{
  port: number;
  bytes: () => number;
  /** Times at which data arrived, after `since` (ms). */
  firstByteAfter: (since: number) => Promise<number>;
  done: Promise<{ sha: string; bytes: number; error?: Error }>;
  close(): void;
}> {
  let bytes = 0;
  let waiter: { since: number; resolve: (t: number) => void } | undefined;
  let resolveDone!: (r: { sha: string; bytes: number; error?: Error }) => void;
  const done = new Promise<{ sha: string; bytes: number; error?: Error }>((r) => (resolveDone = r));
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    const h = createHash('sha256');
    s.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
      const now = Date.now();
      if (waiter && now >= waiter.since) {
        waiter.resolve(now);
        waiter = undefined;
      }
    });
    s.on('error', (error) => resolveDone({ sha: '', bytes, error }));
    s.on('end', () => {
      resolveDone({ sha: h.digest('hex'), bytes });
      s.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    bytes: () => bytes,
    firstByteAfter: (since) => new Promise((resolve) => (waiter = { since, resolve })),
    done,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** Write `total` random bytes to `c`, then end it; resolves with their SHA-256. */
async function writeRandom(c: net.Socket, total: number): Promise<string> {
  const h = createHash('sha256');
  let left = total;
  while (left > 0) {
    const chunk = randomBytes(Math.min(1024 * 1024, left));
    left -= chunk.length;
    h.update(chunk);
    if (!c.write(chunk)) await once(c, 'drain');
  }
  c.end();
  return h.digest('hex');
}

async function until(pred: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

describe('amqp-tunnel resume (processes, fault proxy)', function () {
  this.timeout(180_000);
  const cleanup: Array<() => Promise<unknown> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  const cli = (args: string[]): Cli => spawnCli(cleanup, [...args, '--json']);
  const proxy = async (): Promise<FaultProxy> => {
    const p = await new FaultProxy(brokerPort).start();
    cleanup.push(() => p.close());
    return p;
  };
  /** Publisher and forwarder with `--resume-grace`; the `cut` side talks to the broker through `fp`. */
  async function pair(target: string, cut: 'forward' | 'publish', fp: FaultProxy, grace = '30'): Promise<{ pub: Cli; fwd: Cli; port: number }> {
    const queue = uniqueQueue();
    const via = ['--broker', fp.url(BROKER)];
    const pub = cli(['publish', target, '--queue', queue, '--resume-grace', grace, ...(cut === 'publish' ? via : [])]);
    await pub.state('ready');
    const fwd = cli(['forward', queue, '0', '--resume-grace', grace, ...(cut === 'forward' ? via : [])]);
    const port = await fwd.forwardPort();
    return { pub, fwd, port };
  }

  const pauses: number[] = [];
  after(() => {
    if (pauses.length > 0) console.log(`      pause after a ${CUT_MS / 1000} s cut (proxy restored -> next byte at the far end), ms: ${pauses.join(', ')}`);
  });

  for (const side of ['forward', 'publish'] as const) {
    for (const cuts of [1, 3]) {
      it(`a ${TOTAL / 1024 / 1024} MiB transfer survives ${cuts === 1 ? 'a 5 s cut' : 'three 5 s cuts in a row'} of the ${side} side's broker connection: same SHA-256, never reset`, async () => {
        const sink = await sinkServer();
        cleanup.push(() => sink.close());
        const fp = await proxy();
        const { pub, fwd, port } = await pair(String(sink.port), side, fp);
        const cutCli = side === 'forward' ? fwd : pub;
        const c = net.connect({ port, host: '127.0.0.1' });
        let clientError: Error | undefined;
        c.on('error', (err) => (clientError = err));
        c.resume(); // the sink sends nothing; its end arrives as 'end'
        const clientEnded = once(c, 'end');
        await once(c, 'connect');
        const writing = writeRandom(c, TOTAL);
        for (let i = 0; i < cuts; i++) {
          // Cut while data flows: after a further share of the transfer arrived.
          const at = Math.floor(((i + 1) * TOTAL) / (cuts + 2));
          await until(() => sink.bytes() >= at, `transfer reached ${at} bytes`);
          const mark = cutCli.events.length;
          fp.cutAll();
          const e = await cutCli.state('reconnecting', mark, 10_000);
          assert.equal(e.held, 1, 'the CLI reports the stream held');
          await sleep(CUT_MS);
          const restored = Date.now();
          const next = sink.firstByteAfter(restored);
          fp.resume();
          pauses.push((await next) - restored);
          await cutCli.state('ready', mark, 10_000);
        }
        const [sent, got] = await Promise.all([writing, sink.done]);
        assert.equal(got.error, undefined, `the target's connection was reset: ${String(got.error)}`);
        assert.equal(got.bytes, TOTAL);
        assert.equal(got.sha, sent);
        await clientEnded;
        assert.equal(clientError, undefined, `the client's connection failed: ${String(clientError)}`);
        assert.doesNotMatch(cutCli.stdout, /"event":"connectionClosed"[^\n]*"error"/);
      });
    }
  }

  it('a real debugger session (node --inspect, CDP over WebSocket) keeps working after a 5 s cut, on the same TCP connection', async () => {
    const debuggee = spawn(process.execPath, ['--inspect=127.0.0.1:0', '-e', 'setInterval(() => {}, 1000)'], { stdio: ['ignore', 'ignore', 'pipe'] });
    cleanup.push(async () => {
      debuggee.kill('SIGKILL');
      await once(debuggee, 'exit').catch(() => undefined);
    });
    let err = '';
    const inspectPort = await new Promise<number>((resolve, reject) => {
      debuggee.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        const m = /ws:\/\/127\.0\.0\.1:(\d+)\//.exec(err);
        if (m) resolve(Number(m[1]));
      });
      debuggee.once('exit', () => reject(new Error(`debuggee exited: ${err}`)));
    });
    const fp = await proxy();
    const { fwd, port } = await pair(`127.0.0.1:${inspectPort}`, 'forward', fp);
    const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
    const session = await CdpSession.open(list[0]!.webSocketDebuggerUrl);
    cleanup.push(() => session.close());
    const localPort = session.socket.localPort;
    assert.equal(await session.evaluate('6*7'), 42);
    const mark = fwd.events.length;
    fp.cutAll();
    const e = await fwd.state('reconnecting', mark, 10_000);
    assert.equal(e.held, 1);
    await sleep(CUT_MS);
    fp.resume();
    const restored = Date.now();
    assert.equal(await session.evaluate('6*7'), 42);
    const took = Date.now() - restored;
    assert.equal(session.failure, undefined);
    assert.equal(session.closed, false);
    assert.equal(session.socket.localPort, localPort, 'the same TCP connection');
    console.log(`      debugger: Runtime.evaluate answered ${took} ms after the broker came back`);
    assert.equal(await session.evaluate('6*7'), 42);
  });

  for (const side of ['forward', 'publish'] as const) {
    it(`a cut of the ${side} side longer than the grace period (3 s) resets both TCP connections, and the broker holds no queue of the stream`, async () => {
      const sink = await sinkServer();
      cleanup.push(() => sink.close());
      const fp = await proxy();
      const { pub, fwd, port } = await pair(String(sink.port), side, fp, '3');
      const c = net.connect({ port, host: '127.0.0.1' });
      const clientFailed = new Promise<Error>((resolve) => c.once('error', resolve));
      const clientEnded = new Promise<void>((resolve) => c.once('end', resolve));
      await once(c, 'connect');
      c.write(randomBytes(4096));
      await until(() => sink.bytes() === 4096, 'the first bytes arrived');
      // The publisher's connection event carries the stream's address, with both data queues.
      const opened = String((await pub.waitFor((x) => x.event === 'connection')).stream);
      const queues = ['local_queue', 'remote_queue'].map((k) => new RegExp(`${k}=([^&]+)`).exec(opened)?.[1] ?? '');
      assert.ok(queues.every((q) => q.startsWith('amq.gen-')), `queue names in ${opened}`);
      assert.ok(await queueExists(queues[0]!));
      fp.cutAll();
      const failed = await Promise.race([clientFailed, clientEnded.then(() => undefined)]);
      assert.equal((failed as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET', 'the client connection is reset, never a clean end');
      const target = await sink.done;
      assert.equal((target.error as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET', 'the target connection is reset');
      const cutCli = side === 'forward' ? fwd : pub;
      await cutCli.waitFor((x) => x.event === 'connectionClosed' && /did not come back within 3 s/.test(String(x.error)));
      fp.resume();
      for (let i = 0; i < 40; i++) {
        const left = await Promise.all(queues.map((q) => queueExists(q)));
        if (!left.some(Boolean)) break;
        await sleep(250);
      }
      for (const q of queues) assert.equal(await queueExists(q), false, `queue ${q} is gone`);
    });
  }
  it('a peer process killed (kill -9) is gone for good: the other side resets its connection after the grace period (3 s), not before', async () => {
    const sink = await sinkServer();
    cleanup.push(() => sink.close());
    const fp = await proxy();
    const { pub, fwd, port } = await pair(String(sink.port), 'forward', fp, '3');
    const c = net.connect({ port, host: '127.0.0.1' });
    const failed = new Promise<{ err: Error; at: number }>((resolve) => c.once('error', (err) => resolve({ err, at: Date.now() })));
    await once(c, 'connect');
    c.write('x');
    await until(() => sink.bytes() === 1, 'the first byte arrived');
    pub.proc.kill('SIGKILL');
    const killedAt = Date.now();
    const r = await failed;
    assert.equal((r.err as NodeJS.ErrnoException).code, 'ECONNRESET');
    const after = r.at - killedAt;
    assert.ok(after >= 3000 && after <= 6000, `reset ${after} ms after the kill (grace 3 s)`);
    await fwd.waitFor((x) => x.event === 'connectionClosed' && /did not come back within 3 s/.test(String(x.error)));
  });
});
