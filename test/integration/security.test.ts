/**
 * Security against a RabbitMQ node of the test's own (one node for the
 * whole file, started in `before`, stopped in `after`): certificate login
 * (SASL EXTERNAL over a TLS listener with certificates made by the test),
 * the least-privilege permissions of docs/security.md applied to a user the
 * test creates, and a leak test that runs tunnels with a known broker
 * password and tunnel secret and searches everything they printed.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { connect } from '../../src/stream';
import { CLI, Cli } from './clirunner';
import { echoServer, uniqueQueue } from './support';
import { TestCerts, startTestNode, type TestNode } from './testnode';

const DOC = path.resolve(__dirname, '../../docs/security.md');

/** The vhost, user and the three permission patterns of the example in docs/security.md. */
function permissionExample(): { vhost: string; user: string; configure: string; write: string; read: string; prefix: string } {
  const doc = fs.readFileSync(DOC, 'utf8');
  const m = /rabbitmqctl set_permissions -p (\S+) (\S+) \\\n\s*'([^']+)' \\\n\s*'([^']+)' \\\n\s*'([^']+)'/.exec(doc);
  assert.ok(m, 'docs/security.md has no set_permissions example in the expected form');
  const prefix = /forward queues named `([a-z]+-)\.\.\.`/.exec(doc)?.[1];
  assert.ok(prefix, 'docs/security.md names no queue prefix for the example');
  return { vhost: m[1]!, user: m[2]!, configure: m[3]!, write: m[4]!, read: m[5]!, prefix };
}

describe('security on a broker node of the test\'s own', function () {
  this.timeout(180_000);
  let node: TestNode;
  let certs: TestCerts;
  let client: { cert: string; key: string };
  const CN = 'tunnel-user';
  const cleanup: Array<() => Promise<unknown> | void> = [];

  before(async function () {
    this.timeout(180_000);
    assert.ok(fs.existsSync(CLI), `${CLI} is missing: run npm run build first`);
    certs = new TestCerts();
    // The broker's certificate names only "localhost": 127.0.0.1 is a wrong host name for it.
    const server = certs.issue('server', 'localhost', 'ca', 'DNS:localhost');
    client = certs.issue('client', CN);
    node = await startTestNode({ label: 'sec', tls: { cacert: certs.ca, cert: server.cert, key: server.key } });
    await node.ctl('add_user', CN, randomBytes(12).toString('hex'));
    await node.ctl('clear_password', CN);
    await node.ctl('set_permissions', CN, '.*', '.*', '.*');
  });

  after(async () => {
    await node?.stop();
    certs?.remove();
  });

  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  const read = (f: string): Buffer => fs.readFileSync(f);
  const tlsUrl = (host = 'localhost'): string => `amqps://${host}:${node.tlsPort}`;

  describe('certificate login (SASL EXTERNAL, rabbitmq_auth_mechanism_ssl)', () => {
    it('a client certificate signed by the broker\'s CA logs in as its CN, without a password', async () => {
      const name = `sec-cert-${process.pid}-${Date.now()}`;
      const conn = await connect(tlsUrl(), { ca: read(certs.ca), cert: read(client.cert), key: read(client.key), externalAuth: true, connectionName: name });
      try {
        const q = uniqueQueue('cert');
        const srv = conn.listen(q, (s) => s.pipe(s));
        await once(srv, 'listening');
        const s = conn.connect(q);
        s.end('signed');
        const [d] = (await once(s, 'data')) as [Buffer];
        assert.equal(d.toString(), 'signed');
        const users = await node.ctl('list_connections', 'user', 'client_properties', '-q');
        const line = users.split('\n').find((l) => l.includes(name));
        assert.ok(line?.startsWith(`${CN}\t`), `the broker lists the connection as: ${line}`);
      } finally {
        await conn.close();
      }
    });

    it('the CLI logs in with --external-auth and says "ready for tunnels"', async () => {
      const c = new Cli(['check', '--broker', tlsUrl(), '--ca', certs.ca, '--cert', client.cert, '--key', client.key, '--external-auth']);
      const r = await c.exited;
      assert.equal(r.code, 0, c.stderr);
      assert.match(c.stdout, /ready for tunnels/);
    });

    const refusals: Array<[string, () => Record<string, unknown>, () => string, RegExp]> = [
      [
        'a certificate the broker\'s CA did not sign',
        () => {
          const rogue = certs.issue('rogue', CN, 'self');
          return { ca: read(certs.ca), cert: read(rogue.cert), key: read(rogue.key), externalAuth: true };
        },
        () => tlsUrl(),
        /^the broker at localhost:\d+ refused this client's TLS certificate \(.*\) — it must be signed by a CA the broker trusts \(its ssl_options\.cacertfile\)$/,
      ],
      [
        'an expired client certificate',
        () => {
          const old = certs.issue('expired', CN, 'expired');
          return { ca: read(certs.ca), cert: read(old.cert), key: read(old.key), externalAuth: true };
        },
        () => tlsUrl(),
        /^the broker at localhost:\d+ refused this client's TLS certificate: it has expired — renew the certificate given with --cert \(the 'cert' option\)$/,
      ],
      [
        'a broker address that is not the certificate\'s host name',
        () => ({ ca: read(certs.ca), cert: read(client.cert), key: read(client.key), externalAuth: true }),
        () => tlsUrl('127.0.0.1'),
        /^the broker's TLS certificate at 127\.0\.0\.1:\d+ is issued for another host name \(.*\) — connect with a host name the certificate names$/,
      ],
      [
        'a signed certificate whose CN is no broker user',
        () => {
          const nobody = certs.issue('nobody', 'nobody-here');
          return { ca: read(certs.ca), cert: read(nobody.cert), key: read(nobody.key), externalAuth: true };
        },
        () => tlsUrl(),
        /^the broker at localhost:\d+ refused the certificate login \(SASL EXTERNAL\): it has no user named after the certificate's common name/,
      ],
    ];
    for (const [what, options, url, re] of refusals) {
      it(`refuses ${what} in one sentence`, async () => {
        const err = (await connect(url(), options()).then(
          (c) => c.close().then(() => assert.fail('connected')),
          (e: unknown) => e,
        )) as Error & { code?: string };
        assert.ok(err.code === 'ERR_AMQP_TLS' || err.code === 'ERR_AMQP_AUTH', String(err.code));
        assert.match(err.message, re);
        assert.ok(!err.message.includes('\n'), err.message);
      });
    }

    it('refuses an expired broker certificate in one sentence', async () => {
      const old = certs.issue('expired-broker', 'localhost', 'expired', 'DNS:localhost');
      const endpoint = tls.createServer({ cert: read(old.cert), key: read(old.key) }, (s) => s.destroy());
      endpoint.on('tlsClientError', () => undefined);
      endpoint.listen(0, '127.0.0.1');
      await once(endpoint, 'listening');
      cleanup.push(() => new Promise((r) => endpoint.close(r)));
      const port = (endpoint.address() as net.AddressInfo).port;
      await assert.rejects(connect(`amqps://guest:guest@localhost:${port}`, { ca: read(certs.ca) }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'ERR_AMQP_TLS');
        assert.match(e.message, /^the broker's TLS certificate at localhost:\d+ has expired — the broker's administrator must renew it$/);
        return true;
      });
    });
  });

  describe('least-privilege permissions (the example in docs/security.md)', () => {
    let ex: ReturnType<typeof permissionExample>;
    let url: string;

    before(async () => {
      ex = permissionExample();
      const password = `pw-${randomBytes(9).toString('hex')}`;
      await node.ctl('add_vhost', ex.vhost);
      await node.ctl('add_user', ex.user, password);
      await node.ctl('set_permissions', '-p', ex.vhost, ex.user, ex.configure, ex.write, ex.read);
      url = node.url(ex.user, password, ex.vhost);
    });

    it('is enough for check, publish, forward and list on queues with the example\'s prefix', async () => {
      const check = new Cli(['check', '--broker', url]);
      assert.equal((await check.exited).code, 0, check.stderr);
      assert.match(check.stdout, /ready for tunnels/);

      const target = await echoServer();
      cleanup.push(() => target.close());
      const q = `${ex.prefix}${uniqueQueue('perm')}`;
      const pub = new Cli(['publish', String(target.port), '--queue', q, '--json', '--broker', url]);
      const fwd = new Cli(['forward', q, '0', '--json', '--broker', url]);
      cleanup.push(() => pub.stop(), () => fwd.stop());
      await pub.ready();
      const port = await fwd.forwardPort();
      const s = net.connect(port, '127.0.0.1');
      s.end('least privilege');
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      await new Promise((r) => s.once('close', r));
      assert.equal(Buffer.concat(chunks).toString(), 'least privilege');
      const list = new Cli(['list', '--json', '--broker', url]);
      assert.equal((await list.exited).code, 0, list.stderr);
      assert.match(list.stdout, new RegExp(q), 'the publisher is listed');
      assert.doesNotMatch(pub.stdout + pub.stderr, /not listed on the broker|ACCESS.REFUSED/i);
    });

    it('is refused a queue outside the pattern, and any other vhost', async () => {
      const conn = await connect(url);
      try {
        const srv = conn.createServer();
        srv.listen(uniqueQueue('outside'));
        const [err] = (await once(srv, 'error').catch((e: unknown) => [e])) as [Error & { code?: string }];
        assert.equal(err.code, 'ERR_AMQP_ACCESS');
        assert.match(err.message, /refused to listen on queue 'test-outside-[^']*': .*ACCESS.REFUSED.*refused for user/);
      } finally {
        await conn.close();
      }
      const other = url.replace(/\/[^/]*$/, '/%2F');
      await assert.rejects(connect(other), (e: Error & { code?: string }) => e.code === 'ERR_AMQP_VHOST' || e.code === 'ERR_AMQP_ACCESS');
    });
  });

  describe('end-to-end encryption (aead), seen by the broker\'s firehose tracer', () => {
    /**
     * Every message published or delivered in the vhost is copied to
     * amq.rabbitmq.trace while tracing is on: this is what a broker
     * administrator can see. Runs one transfer of a known text through a
     * publish/forward pair of CLI processes and returns every traced body.
     */
    async function traced(secret: string | undefined, marker: string): Promise<{ bodies: Buffer[]; echoed: string }> {
      const amqplib = await import('amqplib');
      const url = node.url('guest', 'guest');
      const watcher = await amqplib.connect(url);
      cleanup.push(() => watcher.close().catch(() => undefined));
      const ch = await watcher.createChannel();
      const { queue: traceQueue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      await ch.bindQueue(traceQueue, 'amq.rabbitmq.trace', '#');
      const bodies: Buffer[] = [];
      await ch.consume(traceQueue, (m) => m && bodies.push(m.content), { noAck: true });
      await node.ctl('trace_on');
      cleanup.push(() => node.ctl('trace_off').catch(() => undefined));

      const target = await echoServer();
      cleanup.push(() => target.close());
      const q = uniqueQueue('firehose');
      const env = secret ? { AMQP_TUNNEL_SECRET: secret } : {};
      const pub = new Cli(['publish', String(target.port), '--queue', q, '--json', '--broker', url], env);
      const fwd = new Cli(['forward', q, '0', '--json', '--broker', url], env);
      cleanup.push(() => pub.stop(), () => fwd.stop());
      await pub.ready();
      const port = await fwd.forwardPort();
      const text = Array.from({ length: 2000 }, (_, i) => `${marker} line ${i}\n`).join('');
      const s = net.connect(port, '127.0.0.1');
      s.end(text);
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      await new Promise((r) => s.once('close', r));
      await fwd.waitFor((e) => e.event === 'connectionClosed');
      await pub.waitFor((e) => e.event === 'connectionClosed');
      // The tracer copies each message before routing it, so every copy is in the trace
      // queue by now: wait until the queue has handed them all to our consumer, then one
      // more round trip on the channel, behind which those deliveries arrive.
      await node.ctl('trace_off');
      while ((await ch.checkQueue(traceQueue)).messageCount > 0);
      await ch.checkQueue(traceQueue);
      return { bodies, echoed: Buffer.concat(chunks).toString() };
    }

    it('without a secret the tracer sees the transfer in plain text (the test can see what the broker sees)', async () => {
      const marker = `PLAINTEXT-${randomBytes(6).toString('hex')}`;
      const { bodies, echoed } = await traced(undefined, marker);
      assert.ok(echoed.includes(`${marker} line 1999`), 'the transfer went through');
      assert.ok(bodies.some((b) => b.includes(marker)), `no traced body held the marker (${bodies.length} traced)`);
    });

    it('with a secret no traced message holds any plaintext of the transfer, either way', async () => {
      const marker = `CIPHERTEXT-${randomBytes(6).toString('hex')}`;
      const { bodies, echoed } = await traced(`firehose secret ${randomBytes(8).toString('hex')}`, marker);
      assert.ok(echoed.includes(`${marker} line 1999`), 'the transfer went through');
      assert.ok(bodies.length > 4, `only ${bodies.length} messages were traced`);
      const leaks = bodies.filter((b) => b.includes(marker) || b.includes(' line 1'));
      assert.equal(leaks.length, 0, `${leaks.length} of ${bodies.length} traced bodies hold plaintext`);
    });
  });

  describe('nothing secret is printed', () => {
    it('runs tunnels with a known broker password and tunnel secret; neither appears in any line, error or --json event', async () => {
      const password = `Leak-Pw-${randomBytes(8).toString('hex')}`;
      const secret = `Leak-Secret-${randomBytes(8).toString('hex')}`;
      const user = `leak-${process.pid}`;
      await node.ctl('add_user', user, password);
      await node.ctl('set_permissions', user, '.*', '.*', '.*');
      const url = node.url(user, password);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'amqp-tunnel-leak-'));
      cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
      const secretFile = path.join(dir, 'secret');
      fs.writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
      const target = await echoServer();
      cleanup.push(() => target.close());
      const q = uniqueQueue('leak');
      const runs: Cli[] = [];
      const run = (args: string[], env?: NodeJS.ProcessEnv): Cli => {
        const c = new Cli(args, env);
        runs.push(c);
        cleanup.push(() => c.stop());
        return c;
      };
      // Working tunnels: the password in --broker on one side and in AMQP_URL on the other,
      // the secret from a file on one side and from the environment on the other.
      const pub = run(['publish', String(target.port), '--queue', q, '--json', '--verbose', '--broker', url, '--secret-file', secretFile]);
      await pub.ready();
      const fwd = run(['forward', q, '0', '--json', '--verbose'], { AMQP_URL: url, AMQP_TUNNEL_SECRET: secret });
      const port = await fwd.forwardPort();
      for (let i = 0; i < 3; i++) {
        const s = net.connect(port, '127.0.0.1');
        s.end(`hello ${i}`);
        s.resume();
        await new Promise((r) => s.once('close', r));
      }
      // Failing ones: a wrong secret, a wrong password, a bad vhost, human output too.
      const wrong = run(['forward', q, '0', '--json', '--verbose', '--broker', url], { AMQP_TUNNEL_SECRET: `${secret}-not` });
      const wport = await wrong.forwardPort();
      const w = net.connect(wport, '127.0.0.1');
      w.on('error', () => undefined);
      await new Promise((r) => w.once('close', r));
      await wrong.waitFor((e) => e.event === 'connectionClosed');
      const badLogin = run(['forward', q, '0', '--verbose', '--broker', url.replace(encodeURIComponent(password), `${password}x`)]);
      await badLogin.exited;
      const badVhost = run(['publish', '1', '--queue', q, '--json', '--broker', `${url}nope`], { AMQP_TUNNEL_SECRET: secret });
      await badVhost.exited;
      const human = run(['publish', String(target.port), '--queue', `${q}-h`, '--verbose', '--broker', url], { AMQP_TUNNEL_SECRET: secret });
      for (const deadline = Date.now() + 15_000; !/publishing/.test(human.stderr) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
      assert.match(human.stderr, /warning: no tunnel secret|publishing/);
      for (const c of runs) await c.stop('SIGTERM');

      const everything = runs.map((c) => c.stdout + c.stderr).join('\n');
      assert.match(everything, /secret does not match/, 'the failing runs did print their errors');
      assert.match(everything, /refused the login/);
      for (const needle of [password, encodeURIComponent(password), secret, Buffer.from(secret).toString('base64')]) {
        assert.ok(!everything.includes(needle), `printed: ${needle}`);
      }
    });
  });
});
