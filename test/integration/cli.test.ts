/**
 * The `amqp-tunnel` command as a user runs it: built CLI processes, a real
 * broker (AMQP_URL), real TCP on port 0. Run `npm run build` first.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CdpSession } from './cdp';
import { brokerConnectionNames, echoServer } from './support';
import { CLI, Cli, spawnCli } from './clirunner';
import { freePort } from '../../src/tunnel/spec';

const BROKER = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
let n = 0;
const uniqueQueue = (): string => `t-${process.pid}-${Date.now()}-${n++}`;

async function httpServer(handler: http.RequestListener): Promise<[http.Server, number]> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return [server, (server.address() as net.AddressInfo).port];
}

function assertOneLineError(stderr: string, pattern: RegExp): void {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^amqp-tunnel: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(stderr, /\n\s+at |Error: .*\n/);
}

describe('amqp-tunnel CLI (processes, real broker)', function () {
  this.timeout(60_000);
  const cleanup: Array<() => Promise<unknown> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  const cli = (args: string[], env?: NodeJS.ProcessEnv): Cli => spawnCli(cleanup, args, env);

  before(() => {
    assert.ok(fs.existsSync(CLI), `${CLI} is missing: run npm run build first`);
  });

  it('serves an HTTP server through publish and forward, and both exit 0 on SIGINT/SIGTERM', async () => {
    const [server, port] = await httpServer((req, res) => res.end(`hello from ${req.url}`));
    cleanup.push(() => void server.close());
    const queue = uniqueQueue();
    const pub = cli(['publish', String(port), '--queue', queue, '--json']);
    await pub.ready();
    const fwd = cli(['forward', queue, '0', '--json']);
    const fport = await fwd.forwardPort();
    const res = await fetch(`http://127.0.0.1:${fport}/some/path`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'hello from /some/path');
    await fwd.waitFor((e) => e.event === 'connectionClosed' || e.event === 'connection');
    assert.equal(await fwd.stop('SIGINT'), 0);
    assert.equal(await pub.stop('SIGTERM'), 0);
    assert.ok(pub.events.some((e) => e.event === 'stopped'));
  });

  it('with stderr not a terminal, publish and forward print one short "ready:" line and short connection lines (details with -v and --json)', async () => {
    const echo = await echoServer();
    cleanup.push(() => echo.close());
    const queue = uniqueQueue();
    const waitText = async (c: Cli, re: RegExp): Promise<RegExpMatchArray> => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const m = c.stderr.match(re);
        if (m) return m;
        if (c.proc.exitCode !== null || Date.now() > deadline) throw new Error(`not seen: ${re}; stderr:\n${c.stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const pub = cli(['publish', String(echo.port), '--queue', queue]);
    await waitText(pub, /ready: /);
    const fwd = cli(['forward', queue, '0']);
    const port = Number((await waitText(fwd, /ready: forwarding 127\.0\.0\.1:(\d+) -> queue/))[1]);
    const verbose = cli(['publish', String(echo.port), '--queue', `${queue}-v`, '-v']);
    await waitText(verbose, /ready: /);
    const json = cli(['forward', `${queue}-v`, '0', '--json']);
    const jport = await json.forwardPort();
    for (const p of [port, jport]) {
      const s = net.connect(p, '127.0.0.1');
      await once(s, 'connect');
      s.resume();
      s.end('x');
      await once(s, 'close');
    }
    await waitText(pub, /conn #1 closed/);
    await waitText(verbose, /conn #1 closed/);
    // (publish without a secret also warns once about it: docs/security.md)
    const lines = (c: Cli): string[] => c.stderr.trim().split('\n').filter((l) => !/warning: no tunnel secret is set/.test(l));
    // Human mode without -v: the ready line, then one short line per connection event.
    assert.deepEqual(
      lines(pub).map((l) => l.replace(/^\d\d:\d\d:\d\d /, '').replace(/\d+ bytes|\d+\.\d s/g, 'N')),
      [
        `ready: publishing 127.0.0.1:${echo.port} on queue '${queue}' (${BROKER.replace(/:[^:@/]*@/, '@')})`,
        `tunnel publish ${queue} > conn #1 open (to 127.0.0.1:${echo.port})`,
        `tunnel publish ${queue} > conn #1 closed; N out, N in, N`,
      ],
    );
    assert.equal(lines(fwd).filter((l) => /ready: /.test(l)).length, 1, 'one ready line');
    for (const c of [pub, fwd]) {
      for (const l of lines(c).filter((x) => x.includes('conn #'))) assert.ok(l.length < 120 && !/amq\.gen-|amqp:\/\//.test(l), `a short connection line: ${l}`);
    }
    // -v adds the stream's address; --json carries it as a field.
    assert.match(verbose.stderr, /conn #1 stream amqp:\/\/[^ ]*local_queue=amq\.gen-/);
    assert.equal(verbose.stderr.includes(':guest@'), false, 'no password');
    const opened = json.events.find((e) => e.event === 'connection');
    assert.ok(opened, 'a connection event');
    assert.match(String(opened.peer), /^127\.0\.0\.1:\d+$/);
  });

  it('ends open connections with EOF on the first SIGINT and exits at once on a second', async () => {
    const echo = await echoServer();
    cleanup.push(() => echo.close());
    const queue = uniqueQueue();
    const pub = cli(['publish', String(echo.port), '--queue', queue, '--json']);
    await pub.ready();
    const fwd = cli(['forward', queue, '0', '--json']);
    const fport = await fwd.forwardPort();
    // allowHalfOpen: the client keeps its side open after the tunnel's FIN, so the stop cannot finish on its own.
    const c = net.connect({ port: fport, host: '127.0.0.1', allowHalfOpen: true });
    c.on('error', () => undefined);
    c.write('x');
    await once(c, 'data');
    const ended = once(c, 'end');
    fwd.proc.kill('SIGINT');
    await ended; // a clean FIN, not a reset
    const sentAt = Date.now();
    fwd.proc.kill('SIGINT');
    const r = await fwd.exited;
    assert.equal(r.code, 1);
    assert.ok(Date.now() - sentAt < 1000, 'the second signal did not exit at once');
    c.destroy();
  });

  it('carries a real Node inspector session: /json/list and Runtime.evaluate of 6*7 over the forwarded port', async () => {
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
    const queue = uniqueQueue();
    const pub = cli(['publish', `127.0.0.1:${inspectPort}`, '--queue', queue, '--json']);
    await pub.ready();
    const fwd = cli(['forward', queue, '127.0.0.1:0', '--json']);
    const fport = await fwd.forwardPort();
    const list = (await (await fetch(`http://127.0.0.1:${fport}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
    assert.ok(list.length >= 1);
    const wsUrl = list[0]!.webSocketDebuggerUrl;
    assert.match(wsUrl, new RegExp(`^ws://127\\.0\\.0\\.1:${fport}/`));
    const session = await CdpSession.open(wsUrl);
    try {
      assert.equal(await session.evaluate('6*7'), 42);
    } finally {
      session.close();
    }
    assert.equal(await fwd.stop(), 0);
    assert.equal(await pub.stop(), 0);
  });

  it('speaks the Go bridge syntax: server and client with a Go-style URL', async () => {
    const [server, port] = await httpServer((_req, res) => res.end('go-compatible'));
    cleanup.push(() => void server.close());
    const queue = uniqueQueue();
    const goUrl = `${BROKER.replace(/\/$/, '')}/?server_queue=${queue}`;
    const pub = cli(['server', `:${port}`, goUrl, '--json']);
    await pub.ready();
    const fwd = cli(['client', '127.0.0.1:0', goUrl, '--json']);
    const fport = await fwd.forwardPort();
    assert.equal(await (await fetch(`http://127.0.0.1:${fport}/`)).text(), 'go-compatible');
    assert.doesNotMatch(pub.stdout + pub.stderr + fwd.stdout + fwd.stderr, /guest:guest@/, 'a password was printed');
  });

  it('webclient routes each connection by its X-AMQP-Server-Queue header and answers 400 without it', async () => {
    const [a, portA] = await httpServer((_req, res) => res.end('service A'));
    const [b, portB] = await httpServer((_req, res) => res.end('service B'));
    cleanup.push(() => void a.close(), () => void b.close());
    const qa = uniqueQueue();
    const qb = uniqueQueue();
    const pubA = cli(['publish', String(portA), '-q', qa, '--json']);
    const pubB = cli(['publish', String(portB), '-q', qb, '--json']);
    await Promise.all([pubA.ready(), pubB.ready()]);
    const web = cli(['webclient', '127.0.0.1:0', BROKER, '--json']);
    const wport = await web.forwardPort();
    // A fresh connection per request (agent: false): routing is per connection, by its first request.
    const get = async (queue?: string): Promise<[number, string]> => {
      const req = http.get({ host: '127.0.0.1', port: wport, path: '/', agent: false, headers: queue ? { 'X-AMQP-Server-Queue': queue } : {} });
      const [res] = (await once(req, 'response')) as [http.IncomingMessage];
      let body = '';
      for await (const chunk of res) body += String(chunk);
      return [res.statusCode ?? 0, body];
    };
    assert.deepEqual(await get(qa), [200, 'service A']);
    assert.deepEqual(await get(qb), [200, 'service B']);
    const [status, body] = await get();
    assert.equal(status, 400);
    assert.match(body, /x-amqp-server-queue/);
  });

  it('runs a publish and a forward tunnel from one JSON file in one process', async () => {
    const [server, port] = await httpServer((_req, res) => res.end('from run'));
    cleanup.push(() => void server.close());
    const queue = uniqueQueue();
    const file = path.join(os.tmpdir(), `amqp-tunnel-run-${process.pid}-${n++}.json`);
    fs.writeFileSync(file, JSON.stringify({ tunnels: [{ publish: `127.0.0.1:${port}`, queue }, { forward: queue, bind: '127.0.0.1:0' }] }));
    cleanup.push(() => fs.rmSync(file, { force: true }));
    const run = cli(['run', file, '--json']);
    await run.ready();
    const fport = await run.forwardPort();
    assert.equal(await (await fetch(`http://127.0.0.1:${fport}/`)).text(), 'from run');
    // Both tunnels share one broker connection, named after the process. It is two AMQP
    // connections, one that publishes and one that consumes (a broker alarm blocks only
    // the first, so acks keep flowing; docs/protocol.md, "Broker alarms").
    const names = await brokerConnectionNames();
    const mine = names.filter((x) => x.includes(`(pid ${run.proc.pid})`));
    assert.deepEqual(mine.map((x) => x.slice(x.lastIndexOf(' ('))).sort(), [' (consume)', ' (publish)'], names.join('\n'));
    assert.equal(await run.stop(), 0);
  });

  describe('bad input: one line naming the cause, exit 2 for usage and 1 for runtime, no stack trace', () => {
    const cases: Array<[string, string[], number, RegExp]> = [
      ['an unknown flag', ['publish', '9229', '--queue', 'q', '--bogus'], 2, /unknown option '--bogus'/],
      ['an unknown command', ['frobnicate'], 2, /unknown command 'frobnicate'/],
      ['a port out of range', ['forward', 'q', '70000'], 2, /port 70000 is out of range/],
      ['a port that is not a number', ['publish', 'http', '--queue', 'q'], 2, /'http' is not a valid port/],
      ['publish without --queue', ['publish', '9229'], 2, /needs --queue/],
      ['a Go URL without server_queue', ['client', ':0', 'amqp://guest:secret@127.0.0.1/'], 2, /names no queue/],
      ['an unreachable broker', ['forward', 'q', '0', '--broker', 'amqp://guest:guest@127.0.0.1:1'], 1, /cannot reach the broker at 127\.0\.0\.1:1/],
      ['amqps:// to a port without TLS', ['forward', 'q', '0', '--broker', BROKER.replace(/^amqp:\/\/[^@]*@/, 'amqps://guest:secret@')], 1, /does not speak TLS on that port/],
    ];
    for (const [what, args, code, pattern] of cases) {
      it(`rejects ${what} with exit ${code}`, async () => {
        const c = cli(args);
        const r = await c.exited;
        assert.equal(r.code, code, c.stderr);
        assertOneLineError(c.stderr, pattern);
        assert.doesNotMatch(c.stderr, /secret/);
      });
    }

    it('rejects a wrong password with exit 1 and does not print it', async () => {
      const bad = BROKER.replace(/:([^:@/]*)@/, ':wrong-secret@');
      const c = cli(['publish', '9229', '--queue', uniqueQueue(), '--broker', bad]);
      const r = await c.exited;
      assert.equal(r.code, 1, c.stderr);
      assertOneLineError(c.stderr, /refused the login/);
      assert.doesNotMatch(c.stderr, /wrong-secret/);
    });

    it('rejects a queue already published elsewhere with exit 1', async () => {
      const queue = uniqueQueue();
      const first = cli(['publish', '9229', '--queue', queue, '--json']);
      await first.ready();
      const second = cli(['publish', '9229', '--queue', queue]);
      const r = await second.exited;
      assert.equal(r.code, 1, second.stderr);
      assertOneLineError(second.stderr, new RegExp(`queue '${queue}'.*already in use`));
    });
  });

  it('shows a live status line on a terminal: state, open and total connections, bytes', async function () {
    this.timeout(30_000);
    const echo = await echoServer();
    cleanup.push(() => echo.close());
    const queue = uniqueQueue();
    const pub = cli(['publish', String(echo.port), '--queue', queue, '--json']);
    await pub.ready();
    const port = await freePort();
    // `script` gives the CLI a real terminal; its output is the terminal's.
    const term = spawn('script', ['-qfec', `${process.execPath} ${CLI} forward ${queue} 127.0.0.1:${port}`, '/dev/null'], {
      env: { ...process.env, AMQP_URL: BROKER },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    cleanup.push(async () => {
      if (term.exitCode === null) term.kill('SIGKILL');
    });
    let screen = '';
    term.stdout!.on('data', (d: Buffer) => (screen += d.toString()));
    const until = async (re: RegExp): Promise<void> => {
      const end = Date.now() + 15_000;
      while (!re.test(screen)) {
        if (Date.now() > end) throw new Error(`no ${re} on the terminal; it shows:\n${JSON.stringify(screen)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await until(/ready/);
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    c.write('hello');
    await once(c, 'data');
    await until(/\r\x1b\[Kready \| 1 open, 1 total \| out 5 B in 5 B/);
    c.destroy();
  });

  it('check says "ready for tunnels" for a working broker and names the problem for a wrong password', async () => {
    const ok = cli(['check']);
    assert.equal((await ok.exited).code, 0, ok.stderr);
    assert.match(ok.stdout, /ready for tunnels/);
    const bad = cli(['check', '--broker', BROKER.replace(/:([^:@/]*)@/, ':nope@')]);
    assert.equal((await bad.exited).code, 1);
    assertOneLineError(bad.stderr, /refused the login/);
  });

  it('prints help for each command and exits 0', async () => {
    for (const cmd of ['publish', 'forward', 'check', 'run', 'server', 'client', 'webclient']) {
      const c = cli([cmd, '--help']);
      assert.equal((await c.exited).code, 0);
      assert.match(c.stdout, new RegExp(`Usage: amqp-tunnel ${cmd}`));
    }
  });
});
