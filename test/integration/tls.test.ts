/**
 * TLS as users meet it, against a TLS endpoint in front of the real broker:
 * a local TLS server with a throw-away self-signed certificate (made with
 * the openssl command) that pipes each connection to RabbitMQ. It checks the
 * TLS options of the library and the CLI, and the errors for an untrusted
 * certificate and a TLS version the broker does not offer.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { connect } from '../../src/stream';
import { Cli } from './clirunner';
import { AMQP_URL, readAll, uniqueQueue } from './support';

describe('TLS to the broker (a TLS endpoint in front of the real broker)', function () {
  this.timeout(60_000);
  const broker = new URL(AMQP_URL);
  let dir: string;
  let certFile: string;
  let cert: Buffer;
  let server: tls.Server;
  let port: number;
  const open = new Set<net.Socket>();

  /** An amqps:// URL to the endpoint, with the real broker's credentials. */
  const tlsUrl = (password = decodeURIComponent(broker.password)): string =>
    `amqps://${broker.username}:${encodeURIComponent(password)}@localhost:${port}${broker.pathname}`;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'amqp-tunnel-tls-'));
    certFile = path.join(dir, 'cert.pem');
    const keyFile = path.join(dir, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
    ], { stdio: 'ignore' });
    cert = fs.readFileSync(certFile);
    server = tls.createServer({ key: fs.readFileSync(keyFile), cert, maxVersion: 'TLSv1.2' }, (client) => {
      const upstream = net.connect(Number(broker.port || 5672), broker.hostname);
      for (const s of [client, upstream]) {
        open.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          open.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    server.on('tlsClientError', () => undefined);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as net.AddressInfo).port;
  });

  after(async () => {
    for (const s of open) s.destroy();
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('carries a stream over amqps:// when the CA is given', async () => {
    const conn = await connect(tlsUrl(), { ca: cert });
    try {
      const q = uniqueQueue('tls');
      const srv = conn.listen(q, (s) => s.pipe(s));
      await once(srv, 'listening');
      const sock = conn.connect(q);
      const got = readAll(sock);
      sock.end('over TLS');
      assert.equal((await got).toString(), 'over TLS');
    } finally {
      await conn.close();
    }
  });

  it('refuses an untrusted certificate with ERR_AMQP_TLS, saying to pass the CA, never showing the password', async () => {
    const err = (await connect(tlsUrl('tls-Secret-pw')).catch((e: unknown) => e)) as Error & { code?: string };
    assert.equal(err.code, 'ERR_AMQP_TLS');
    assert.match(err.message, /certificate at localhost:\d+ is not trusted .* pass the CA/);
    assert.doesNotMatch(err.message + String(err.stack), /tls-Secret-pw/);
  });

  it('names the TLS version problem when the broker does not offer the minimum asked for', async () => {
    const err = (await connect(tlsUrl(), { ca: cert, minVersion: 'TLSv1.3' }).catch((e: unknown) => e)) as Error & { code?: string };
    assert.equal(err.code, 'ERR_AMQP_TLS');
    assert.match(err.message, /the broker at localhost:\d+ and this client share no TLS version \(.*\) — lower the minimum/);
  });

  it('amqp-tunnel check --ca says "ready for tunnels" over TLS, and without --ca names the certificate problem', async () => {
    const ok = new Cli(['check', '--broker', tlsUrl(), '--ca', certFile]);
    const r = await ok.exited;
    assert.equal(r.code, 0, ok.stderr + ok.stdout);
    assert.match(ok.stdout + ok.stderr, /ready for tunnels/);
    const bad = new Cli(['check', '--broker', tlsUrl()]);
    const r2 = await bad.exited;
    assert.notEqual(r2.code, 0);
    assert.match(bad.stdout + bad.stderr, /not trusted/);
  });
});
