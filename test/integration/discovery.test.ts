/**
 * Discovery and protocol detection end to end: the CLI publishes real
 * debuggees (a Node inspector, debugpy, a JVM's JDWP agent), `amqp-tunnel
 * list` (spawned) and a DiscoveryWatch ask the real broker, and the
 * debuggees' own output shows that detection never reached them.
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { brokerTransport, DiscoveryWatch, type PublisherInfo } from '../../src/tunnel';
import { freePort } from '../../src/tunnel/spec';
import { detectProtocol } from '../../src/tunnel/detect';
import { connect } from '../../src/stream';
import { listPublished } from '../../src/tunnel/discovery';
import { Cli, CLI } from './clirunner';
import { AMQP_URL, echoServer, uniqueQueue } from './support';

// Debian's python3-debugpy lives in the system Python, which a pyenv or venv on PATH may hide.
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

interface Proc {
  proc: ChildProcess;
  output(): string;
  /** Resolves with the first match of `re` in the output. */
  match(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
}

function start(cmd: string, args: string[], cwd?: string): Proc {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd });
  let out = '';
  const waiters: Array<() => void> = [];
  const onData = (d: Buffer): void => {
    out += d.toString();
    for (const w of waiters.splice(0)) w();
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  proc.once('exit', () => {
    for (const w of waiters.splice(0)) w();
  });
  return {
    proc,
    output: () => out,
    async match(re, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(out);
        if (m) return m;
        if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`${cmd} did not print ${re} (exit ${proc.exitCode}):\n${out}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
  };
}

/** True when something listens on 127.0.0.1:port (read from /proc: a test connection would be debugpy's client). */
function listening(port: number): boolean {
  const want = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return fs
    .readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[1]?.endsWith(want) && f[3] === '0A';
    });
}

/** The pids of every process of ours that talked to the broker (for the broker-log check). */
const ourPids = new Set<number>([process.pid]);

/**
 * Kill a CLI process with SIGKILL, as a crash would, and leave it out of the
 * broker-log check: when a client's TCP connection vanishes, RabbitMQ 3.10
 * may log a `rabbit_channel_sup` shutdown_error (noproc) for a channel of it
 * (its channel process ended on its own before the supervisor stopped it),
 * which says nothing about what the process did while it lived.
 */
function killHard(cli: Cli): void {
  ourPids.delete(cli.proc.pid!);
  cli.proc.kill('SIGKILL');
}

/** The broker's log file, when it runs on this machine and the file is readable. */
function brokerLog(): string | undefined {
  const dir = '/var/log/rabbitmq';
  const file = process.env.RABBITMQ_LOG_FILE ?? (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^rabbit@.*\.log$/.test(f) && !f.includes('upgrade')).map((f) => path.join(dir, f))[0] : undefined);
  return file && fs.existsSync(file) ? file : undefined;
}

/**
 * Error lines the broker logged for connections of `pids` after byte `from`
 * of its log. A channel error names the connection's Erlang pid only, so the
 * connections are found by their names (logged when they log in):
 * "amqp-tunnel on HOST (pid N)", "amqp-tunnel list on HOST (pid N)".
 */
function brokerErrorsFor(file: string, from: number, pids: Set<number>): string[] {
  const text = fs.readFileSync(file).subarray(from).toString('utf8');
  const ids = new Set<string>();
  for (const m of text.matchAll(/connection (<[\d.]+>) \([^)]*- amqp-tunnel (?:list )?on [^ ]+ \(pid (\d+)\)/g)) if (pids.has(Number(m[2]))) ids.add(m[1]!);
  return text.split('\n').filter((l) => /\[error\]/.test(l) && [...ids].some((id) => l.includes(id)));
}

/** `amqp-tunnel list --json`, spawned: the publishers, and how long the command took. */
async function list(...extra: string[]): Promise<{ all: PublisherInfo[]; ms: number; stdout: string }> {
  const t0 = Date.now();
  const cli = new Cli(['list', '--json', ...extra]);
  ourPids.add(cli.proc.pid!);
  const { code } = await cli.exited;
  const ms = Date.now() - t0;
  assert.equal(code, 0, `list exited with ${code}: ${cli.stderr}`);
  const all = cli.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as PublisherInfo);
  return { all, ms, stdout: cli.stdout };
}

async function publishCli(port: number, queue: string, ...extra: string[]): Promise<Cli> {
  const cli = new Cli(['publish', String(port), '--queue', queue, '--json', ...extra]);
  ourPids.add(cli.proc.pid!);
  await cli.ready();
  return cli;
}

/** A Node program under --inspect on a free port; resolves when the inspector listens. */
async function nodeInspect(dir: string): Promise<Proc & { port: number; script: string }> {
  const script = path.join(dir, 'debuggee.js');
  fs.writeFileSync(script, 'setInterval(() => {}, 1000);\n');
  const p = start(process.execPath, ['--inspect=127.0.0.1:0', script]);
  const m = await p.match(/Debugger listening on ws:\/\/127\.0\.0\.1:(\d+)\//);
  return { ...p, port: Number(m[1]), script };
}

describe('discovery: amqp-tunnel list and the watch, against the real broker', function () {
  this.timeout(120_000);
  const cleanups: Array<() => unknown> = [];
  let dir: string;
  const log = brokerLog();
  const logStart = log ? fs.statSync(log).size : 0;

  before(() => {
    assert.ok(fs.existsSync(CLI), `build the CLI first (npm run build): ${CLI}`);
  });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'discovery-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('lists a node --inspect program published by the CLI, with its runtime and script, within about a second; the inspector sees no debugger', async () => {
    const node = await nodeInspect(dir);
    cleanups.push(() => node.proc.kill('SIGKILL'));
    const queue = uniqueQueue('disc-node');
    const pub = await publishCli(node.port, queue);
    cleanups.push(() => pub.stop());

    const startup = Date.now();
    assert.equal((await new Cli(['--version']).exited).code, 0);
    const startupMs = Date.now() - startup;
    const { all, ms } = await list();
    const mine = all.filter((p) => p.queue === queue);
    assert.equal(mine.length, 1, `listed once: ${JSON.stringify(all)}`);
    const p = mine[0]!;
    assert.equal(p.protocol, 'node');
    assert.equal(p.runtime, `node.js/${process.version}`);
    assert.equal(p.title, node.script, 'the script title from /json/list');
    assert.equal(p.target, `127.0.0.1:${node.port}`);
    assert.equal(p.host, os.hostname());
    assert.equal(p.pid, pub.proc.pid);
    assert.equal(p.targetPid, node.proc.pid);
    assert.equal(p.secretRequired, false);
    assert.match(p.version, /^\d+\.\d+\.\d+/);
    assert.ok(Math.abs(Date.parse(p.startedAt) - Date.now()) < 60_000, p.startedAt);
    // The command as a whole (node start-up included, on a CI box shared by several jobs) and the asking itself.
    const t0 = Date.now();
    const conn = await connect(AMQP_URL);
    const direct = await listPublished(conn);
    const askMs = Date.now() - t0;
    await conn.close();
    // Not asserted: on a CI box shared by several jobs, node's own start-up varies by seconds.
    console.log(`      (amqp-tunnel list: ${ms} ms as a process, --version ${startupMs} ms; connect + ask + 500 ms of answers: ${askMs} ms)`);
    assert.ok(direct.some((x) => x.queue === queue));
    assert.ok(askMs < 1000, `connecting and asking took ${askMs} ms`);
    assert.doesNotMatch(node.output(), /Debugger attached/, 'no debugger client reached the inspector');
  });

  it('prints a table without --json', async () => {
    const node = await nodeInspect(dir);
    cleanups.push(() => node.proc.kill('SIGKILL'));
    const queue = uniqueQueue('disc-table');
    const pub = await publishCli(node.port, queue);
    cleanups.push(() => pub.stop());
    const cli = new Cli(['list']);
    assert.equal((await cli.exited).code, 0, cli.stderr);
    assert.match(cli.stdout, /^QUEUE\s+PROTOCOL\s+TARGET/m);
    assert.match(cli.stdout, new RegExp(`^${queue}\\s+node\\s+127\\.0\\.0\\.1:${node.port}\\s+${os.hostname()}\\s+${pub.proc.pid}\\s`, 'm'));
  });

  it('does not list a publisher started with --unlisted (it still carries streams)', async () => {
    const echo = await echoServer();
    cleanups.push(() => echo.close());
    const listedQ = uniqueQueue('disc-listed');
    const hiddenQ = uniqueQueue('disc-unlisted');
    const a = await publishCli(echo.port, listedQ);
    cleanups.push(() => a.stop());
    const b = await publishCli(echo.port, hiddenQ, '--unlisted');
    cleanups.push(() => b.stop());
    const { all } = await list();
    assert.ok(all.some((p) => p.queue === listedQ), 'the listed one is there');
    assert.ok(!all.some((p) => p.queue === hiddenQ), 'the unlisted one is not');
    const fwd = new Cli(['forward', hiddenQ, '0', '--json']);
    cleanups.push(() => fwd.stop());
    const port = await fwd.forwardPort();
    const sock = net.connect(port, '127.0.0.1');
    sock.end('ping');
    let got = '';
    for await (const d of sock) got += String(d);
    assert.equal(got, 'ping');
  });

  it('says that a publisher requires a tunnel secret, and never what it is', async () => {
    const echo = await echoServer();
    cleanups.push(() => echo.close());
    const queue = uniqueQueue('disc-secret');
    const secret = `s3cret-${Date.now()}-0123456789`;
    const pub = new Cli(['publish', String(echo.port), '--queue', queue, '--json'], { AMQP_TUNNEL_SECRET: secret });
    ourPids.add(pub.proc.pid!);
    cleanups.push(() => pub.stop());
    await pub.ready();
    const { all, stdout } = await list();
    assert.equal(all.find((p) => p.queue === queue)?.secretRequired, true);
    assert.ok(!stdout.includes(secret), 'the secret is not in the answer');
  });

  it('never lists a publisher that stopped or was killed', async () => {
    const echo = await echoServer();
    cleanups.push(() => echo.close());
    const stoppedQ = uniqueQueue('disc-stopped');
    const killedQ = uniqueQueue('disc-killed');
    const stopped = await publishCli(echo.port, stoppedQ);
    const killed = await publishCli(echo.port, killedQ);
    cleanups.push(async () => {
      killHard(killed);
      await killed.exited;
    }, () => stopped.stop());
    const before = await list();
    assert.ok(before.all.some((p) => p.queue === stoppedQ) && before.all.some((p) => p.queue === killedQ), 'both listed while running');
    assert.equal(await stopped.stop('SIGTERM'), 0);
    killHard(killed);
    await killed.exited;
    const after = await list();
    assert.deepEqual(
      after.all.filter((p) => p.queue === stoppedQ || p.queue === killedQ),
      [],
      'neither is listed right after it went',
    );
  });

  it('a watch sees a publisher arrive, leave at once when it stops, and a killed one drop out within a round', async () => {
    const echo = await echoServer();
    cleanups.push(() => echo.close());
    const transport = brokerTransport(AMQP_URL);
    const watch = new DiscoveryWatch(transport, { intervalMs: 1000, windowMs: 500 });
    cleanups.push(async () => {
      await watch.stop();
      await transport.close();
    });
    const has = (q: string): boolean => watch.list().some((p) => p.queue === q);
    const until = (pred: () => boolean, timeoutMs: number): Promise<number> => {
      const t0 = Date.now();
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (pred()) {
            watch.off('change', check);
            clearTimeout(timer);
            resolve(Date.now() - t0);
          }
        };
        const timer = setTimeout(() => {
          watch.off('change', check);
          reject(new Error(`not within ${timeoutMs} ms; listed: ${watch.list().map((p) => p.queue).join(', ')}`));
        }, timeoutMs);
        watch.on('change', check);
        check();
      });
    };
    watch.start();
    await watch.refresh();
    assert.equal(watch.error, undefined);

    const q1 = uniqueQueue('disc-watch-stop');
    const q2 = uniqueQueue('disc-watch-kill');
    const p1 = await publishCli(echo.port, q1);
    const p2 = await publishCli(echo.port, q2);
    cleanups.push(() => p1.stop(), async () => {
      killHard(p2);
      await p2.exited;
    });
    const appeared = await until(() => has(q1) && has(q2), 3000);
    console.log(`      (both appeared ${appeared} ms after the second publisher was ready)`);

    // An orderly stop says "down" before the process exits: gone at once, long before a query round could notice.
    assert.equal(await p1.stop('SIGTERM'), 0);
    const left = await until(() => !has(q1), 300);
    console.log(`      (the stopped one was gone ${left} ms after its process exited: its "down" announcement)`);
    assert.ok(has(q2));

    killHard(p2);
    await p2.exited;
    const dropped = await until(() => !has(q2), 2500);
    console.log(`      (the killed one dropped out ${dropped} ms after it died; bound: interval 1000 + window 500 ms)`);
  });

  it("leaves no error in the broker's log (run after the tests above)", function () {
    if (!log) {
      console.log('      (not checked: no readable broker log on this machine; set RABBITMQ_LOG_FILE)');
      return;
    }
    assert.deepEqual(brokerErrorsFor(log, logStart, ourPids), []);
  });
});

describe('protocol detection without touching the debuggee', function () {
  this.timeout(120_000);
  const cleanups: Array<() => unknown> = [];
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'detect-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('debugpy --wait-for-client: published and listed as python by its command line; its first client is still the user\'s', async () => {
    const port = await freePort();
    const logs = path.join(dir, 'logs');
    fs.mkdirSync(logs);
    const py = start(PYTHON, ['-Xfrozen_modules=off', '-m', 'debugpy', '--listen', `127.0.0.1:${port}`, '--wait-for-client', '--log-to', logs, '-c', "print('user code ran', flush=True)"]);
    cleanups.push(() => py.proc.kill('SIGKILL'));
    const deadline = Date.now() + 20_000;
    while (!listening(port)) {
      assert.ok(Date.now() < deadline && py.proc.exitCode === null, `debugpy did not listen on ${port}: ${py.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const queue = uniqueQueue('disc-debugpy');
    const pub = await publishCli(port, queue);
    cleanups.push(() => pub.stop());
    const { all } = await list();
    const p = all.find((x) => x.queue === queue);
    assert.equal(p?.protocol, 'python', JSON.stringify(p));
    assert.equal(p.runtime, 'debugpy');
    assert.equal(p.title, '-c …', "the program, from the debuggee's command line (the listener is debugpy's adapter)");
    assert.equal(p.targetPid, py.proc.pid, 'the debuggee');

    const adapterLog = (): string =>
      fs
        .readdirSync(logs)
        .filter((f) => f.startsWith('debugpy.adapter'))
        .map((f) => fs.readFileSync(path.join(logs, f), 'utf8'))
        .join('\n');
    assert.match(adapterLog(), /Listening for incoming Client connections/);
    assert.doesNotMatch(adapterLog(), /Accepted incoming Client connection/, "debugpy's own log: no client before the user's");
    assert.doesNotMatch(py.output(), /user code ran/, 'still waiting for its client');
    // The user's debugger is still the first client: debugpy answers its initialize.
    const answer = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      const body = JSON.stringify({ seq: 1, type: 'request', command: 'initialize', arguments: { adapterID: 'debugpy', clientID: 'test' } });
      s.on('connect', () => s.write(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`));
      let buf = '';
      s.on('data', (d) => {
        buf += String(d);
        if (/"command":\s*"initialize"/.test(buf)) {
          s.destroy();
          resolve(buf);
        }
      });
      s.on('error', reject);
    });
    assert.match(answer, /"success":\s*true/);
  });

  it("a JVM's JDWP agent: published and listed as java by its command line; the agent logs no failed handshake", async () => {
    fs.writeFileSync(path.join(dir, 'Sleep.java'), 'public class Sleep { public static void main(String[] a) throws Exception { Thread.sleep(600000); } }\n');
    const jvm = start('java', ['-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=127.0.0.1:0', path.join(dir, 'Sleep.java')]);
    cleanups.push(() => jvm.proc.kill('SIGKILL'));
    const port = Number((await jvm.match(/Listening for transport dt_socket at address: (\d+)/, 60_000))[1]);
    const queue = uniqueQueue('disc-jdwp');
    const pub = await publishCli(port, queue);
    cleanups.push(() => pub.stop());
    const { all } = await list();
    const p = all.find((x) => x.queue === queue);
    assert.equal(p?.protocol, 'java', JSON.stringify(p));
    assert.equal(p.runtime, 'JDWP');
    assert.equal(p.title, path.join(dir, 'Sleep.java'));
    assert.equal(p.targetPid, jvm.proc.pid);
    // Give a stray connection time to be logged: the agent prints a failed handshake at once.
    await list();
    assert.doesNotMatch(jvm.output(), /handshake|failed to attach/i, "the JVM's own output: no connection before the user's");
    // The user's debugger still gets the agent: a handshake succeeds.
    const hs = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('JDWP-Handshake'));
      let buf = '';
      s.on('data', (d) => {
        buf += String(d);
        if (buf.length >= 14) {
          s.destroy();
          resolve(buf);
        }
      });
      s.on('error', reject);
    });
    assert.equal(hs, 'JDWP-Handshake');
  });

  it('a TCP server of a node process without --inspect is "unknown", and not even connected to', async () => {
    const echo = await echoServer();
    cleanups.push(() => echo.close());
    const d = await detectProtocol({ host: '127.0.0.1', port: echo.port });
    assert.equal(d.protocol, 'unknown');
    assert.equal(d.pid, process.pid, 'the listening process was found');
    assert.equal(echo.accepted.length, 0, 'no connection reached the program');
  });

  it('a node --inspect program publishing another port of its own: that port is "unknown" and not connected to', async () => {
    const script = path.join(dir, 'server.js');
    fs.writeFileSync(script, "require('net').createServer((s) => { console.log('CONNECTION'); s.end(); }).listen(0, '127.0.0.1', function () { console.log('PORT ' + this.address().port); });\n");
    const node = start(process.execPath, ['--inspect=127.0.0.1:0', script]);
    cleanups.push(() => node.proc.kill('SIGKILL'));
    const port = Number((await node.match(/PORT (\d+)/))[1]);
    const d = await detectProtocol({ host: '127.0.0.1', port });
    assert.equal(d.protocol, 'unknown');
    assert.equal(d.pid, node.proc.pid);
    assert.doesNotMatch(node.output(), /CONNECTION/);
  });
});
