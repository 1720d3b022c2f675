/**
 * Tunnel secrets and safe defaults through the CLI, as processes against
 * the real broker: --secret-file and AMQP_TUNNEL_SECRET, the warning for a
 * publish without a secret, a wrong secret refused at once on both sides,
 * forward binding 127.0.0.1, and a publisher that only ever dials its target.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as amqp from 'amqplib';
import type { ConsumeMessage } from 'amqplib';
import { CLI, Cli, type Event, spawnCli } from './clirunner';
import { AMQP_URL, echoServer, uniqueQueue } from './support';
import { FEATURES_HEADER, OFFSET_HEADER, VERSION_HEADER } from '../../src/stream/protocol';

const SECRET = 'cli test secret 9d2f1c0b7a6e5d4c';
const WRONG = 'cli wrong secret 1111222233334444';

function logLines(c: Cli): string[] {
  return c.events.filter((e) => e.event === 'log').map((e) => `${String(e.level)}: ${String(e.message)}`);
}

describe('CLI: tunnel secrets and safe defaults (processes, real broker)', function () {
  this.timeout(60_000);
  const cleanup: Array<() => Promise<unknown> | void> = [];
  let dir: string;
  before(() => {
    assert.ok(fs.existsSync(CLI), `${CLI} is missing: run npm run build first`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'amqp-tunnel-secret-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  const cli = (args: string[], env?: NodeJS.ProcessEnv): Cli => spawnCli(cleanup, args, env);
  const secretFile = (name: string, content: string): string => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, content, { mode: 0o600 });
    return f;
  };
  async function target(): Promise<Awaited<ReturnType<typeof echoServer>>> {
    const t = await echoServer();
    cleanup.push(() => t.close());
    return t;
  }
  async function roundTrip(port: number, text: string): Promise<string> {
    const s = net.connect(port, '127.0.0.1');
    s.end(text);
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    await once(s, 'close');
    return Buffer.concat(chunks).toString();
  }

  describe('bad secrets: one line naming the file or variable, exit 2, never the content', () => {
    const cases: Array<[string, () => { args: string[]; env?: NodeJS.ProcessEnv }, RegExp]> = [
      ['a missing --secret-file', () => ({ args: ['--secret-file', path.join(dir, 'nope')] }), /cannot read the --secret-file '.*nope': it does not exist/],
      ['a --secret-file that is a folder', () => ({ args: ['--secret-file', dir] }), /cannot read the --secret-file '.*': it is a folder/],
      ['an empty --secret-file', () => ({ args: ['--secret-file', secretFile('empty', '\n')] }), /the --secret-file '.*empty' is empty; put the tunnel secret in it/],
      ['a short --secret-file', () => ({ args: ['--secret-file', secretFile('short', 'tiny-pw\n')] }), /holds 7 bytes; a tunnel secret needs at least 16/],
      ['an empty AMQP_TUNNEL_SECRET', () => ({ args: [], env: { AMQP_TUNNEL_SECRET: '' } }), /^amqp-tunnel: AMQP_TUNNEL_SECRET is empty/],
    ];
    for (const [what, make, pattern] of cases) {
      it(`rejects ${what}`, async () => {
        const { args, env } = make();
        const c = cli(['publish', '9229', '--queue', uniqueQueue('bad-secret'), ...args], env);
        const r = await c.exited;
        assert.equal(r.code, 2, c.stderr);
        const lines = c.stderr.trim().split('\n');
        assert.equal(lines.length, 1, c.stderr);
        assert.match(lines[0]!, pattern);
        assert.doesNotMatch(c.stderr, /tiny-pw/);
      });
    }
  });

  it('carries a connection when both sides have the same secret (file on one side, environment on the other), without the warning', async () => {
    const t = await target();
    const q = uniqueQueue('cli-secret');
    const pub = cli(['publish', String(t.port), '--queue', q, '--json', '--secret-file', secretFile('ok', `${SECRET}\n`)]);
    await pub.ready();
    const fwd = cli(['forward', q, '0', '--json'], { AMQP_TUNNEL_SECRET: SECRET });
    const port = await fwd.forwardPort();
    assert.equal(await roundTrip(port, 'through a secret tunnel'), 'through a secret tunnel');
    assert.deepEqual(logLines(pub).filter((l) => /no tunnel secret/.test(l)), []);
  });

  it('warns in one sentence when publishing without a secret', async () => {
    const t = await target();
    const q = uniqueQueue('cli-nosecret');
    const pub = cli(['publish', String(t.port), '--queue', q, '--json']);
    const e = await pub.waitFor((x) => x.event === 'log' && /no tunnel secret/.test(String(x.message)));
    assert.equal(e.level, 'warn');
    assert.equal(
      e.message,
      `no tunnel secret is set, so anyone who can use this broker and knows the queue name '${q}' can connect to 127.0.0.1:${t.port} (for a debug port: run code on this machine) — set the same secret on both sides with --secret-file FILE or AMQP_TUNNEL_SECRET (see docs/security.md)`,
    );
  });

  it('a forward with the wrong secret fails each connection at once saying so; the publisher opens no TCP connection and logs the refusal', async () => {
    const t = await target();
    const q = uniqueQueue('cli-wrong');
    const pub = cli(['publish', String(t.port), '--queue', q, '--json', '--verbose'], { AMQP_TUNNEL_SECRET: SECRET });
    await pub.ready();
    const fwd = cli(['forward', q, '0', '--json', '--verbose'], { AMQP_TUNNEL_SECRET: WRONG });
    const port = await fwd.forwardPort();
    const started = Date.now();
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    s.write('hello?');
    await new Promise((r) => s.once('close', r));
    assert.ok(Date.now() - started < 3000, `the connection took ${Date.now() - started} ms to fail: that is a timeout, not a refusal`);
    const fwdClosed = await fwd.waitFor((x) => x.event === 'connectionClosed');
    assert.match(String(fwdClosed.error), /the tunnel secret does not match the one of the publisher on queue '.*' at amqp:\/\/\S+ — use the same secret on both sides/);
    const refused = await pub.waitFor((x) => x.event === 'log' && /refused a stream/.test(String(x.message)));
    assert.match(String(refused.message), new RegExp(`refused a stream on queue '${q}' from 'amq\\.gen-[^']+': the client gave up: the tunnel secret does not match`));
    assert.equal(t.accepted.length, 0, 'the publisher connected to its target for a refused stream');
    for (const c of [pub, fwd]) {
      assert.doesNotMatch(c.stdout + c.stderr, new RegExp(`${SECRET}|${WRONG}`));
    }
  });

  it('a forward without a secret is told the publisher requires one', async () => {
    const t = await target();
    const q = uniqueQueue('cli-missing');
    const pub = cli(['publish', String(t.port), '--queue', q, '--json'], { AMQP_TUNNEL_SECRET: SECRET });
    await pub.ready();
    const fwd = cli(['forward', q, '0', '--json']);
    const port = await fwd.forwardPort();
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    await new Promise((r) => s.once('close', r));
    const closed = await fwd.waitFor((x) => x.event === 'connectionClosed');
    assert.match(String(closed.error), /requires a tunnel secret — set the same secret on this side/);
    assert.equal(t.accepted.length, 0);
  });

  it('forward binds 127.0.0.1 unless told otherwise', async () => {
    const q = uniqueQueue('cli-bind');
    for (const args of [['forward', q], ['forward', q, '0']]) {
      const fwd = cli([...args, '--json']);
      const e: Event = await fwd.waitFor((x) => x.event === 'state' && x.state === 'ready');
      assert.match(String(e.address), /^127\.0\.0\.1:\d+$/);
      await fwd.stop();
    }
  });

  it('the publisher only ever connects to its configured target, whatever the handshake headers say', async () => {
    const t = await target();
    const elsewhere = await target();
    const q = uniqueQueue('cli-target');
    const pub = cli(['publish', String(t.port), '--queue', q, '--json']);
    await pub.ready();
    const raw = await amqp.connect(AMQP_URL);
    cleanup.push(() => raw.close().catch(() => undefined));
    const ch = await raw.createChannel();
    const own = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    const replies: ConsumeMessage[] = [];
    let wake = (): void => undefined;
    await ch.consume(own.queue, (m) => {
      if (m) replies.push(m);
      wake();
    }, { noAck: true });
    const hostile = {
      [VERSION_HEADER]: 2,
      [FEATURES_HEADER]: 'presence,credit,seq,auth,aead,resume,target,connect',
      'x-amqp-stream-target': `127.0.0.1:${elsewhere.port}`,
      'x-amqp-stream-host': '127.0.0.1',
      'x-amqp-stream-port': elsewhere.port,
      host: '127.0.0.1',
      port: elsewhere.port,
      'x-forwarded-host': `127.0.0.1:${elsewhere.port}`,
    };
    ch.publish('', q, Buffer.alloc(0), { replyTo: own.queue, headers: hostile, appId: `127.0.0.1:${elsewhere.port}`, type: 'connect' });
    while (replies.length === 0) await new Promise<void>((r) => (wake = r));
    const listenerQueue = replies[0]!.properties.replyTo as string;
    await pub.waitFor((x) => x.event === 'connection');
    // A well-formed first data message (offset 0, as `seq` wants), carrying the same hostile headers.
    ch.publish('', listenerQueue, Buffer.from(`CONNECT 127.0.0.1:${elsewhere.port}\r\n`), { headers: { ...hostile, [OFFSET_HEADER]: 0 } });
    const data = (): ConsumeMessage | undefined => replies.slice(1).find((m) => m.content.length > 0);
    while (!data()) await new Promise<void>((r) => (wake = r));
    assert.equal(data()!.content.toString(), `CONNECT 127.0.0.1:${elsewhere.port}\r\n`, 'the bytes went to the echo target and came back');
    assert.equal(t.accepted.length, 1);
    assert.equal(elsewhere.accepted.length, 0);
  });
});
