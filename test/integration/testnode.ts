/**
 * A RabbitMQ node of the test's own, beside the shared broker, for tests
 * that must change the broker itself (a TLS listener with certificate
 * login, users and permissions, the firehose tracer). Recipe:
 * /work/shared/reference/rabbitmq-test-node.md. Node name and ports are
 * unique to this process; `stop()` in the test's teardown removes it all.
 *
 * Also: throw-away certificates made with the openssl command (a CA, the
 * broker's certificate, client certificates: signed, self-signed, expired).
 */
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/tunnel/spec';

const execFileP = promisify(execFile);

export interface TestNode {
  readonly name: string;
  readonly amqpPort: number;
  /** The TLS listener's port, when started with `tls`. */
  readonly tlsPort?: number;
  readonly dir: string;
  /** rabbitmqctl against this node; resolves with its stdout. */
  ctl(...args: string[]): Promise<string>;
  /** amqp://user:password@127.0.0.1:PORT/vhost */
  url(user: string, password: string, vhost?: string): string;
  stop(): Promise<void>;
}

export interface TestNodeOptions {
  /** PEM files for a TLS listener that requires a client certificate and allows SASL EXTERNAL (user = CN). */
  tls?: { cacert: string; cert: string; key: string };
  /** The node's log, for a failing test's message. */
  label?: string;
}

/** Start a node and wait until it is up (about 15 s on 2 cores). */
export async function startTestNode(options: TestNodeOptions = {}): Promise<TestNode> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `amqp-tunnel-node-${options.label ?? 'test'}-`));
  const name = `amqptunnel-${options.label ?? 'test'}-${process.pid}@localhost`;
  const amqpPort = await freePort();
  const tlsPort = options.tls ? await freePort() : undefined;
  const distPort = await freePort();
  fs.mkdirSync(path.join(dir, 'log'));
  const conf = [`listeners.tcp.local = 127.0.0.1:${amqpPort}`, 'loopback_users = none'];
  let plugins = '[].';
  if (options.tls && tlsPort) {
    for (const f of ['cacert', 'cert', 'key'] as const) fs.copyFileSync(options.tls[f], path.join(dir, `${f}.pem`));
    conf.push(
      `listeners.ssl.1 = 127.0.0.1:${tlsPort}`,
      `ssl_options.cacertfile = ${path.join(dir, 'cacert.pem')}`,
      `ssl_options.certfile = ${path.join(dir, 'cert.pem')}`,
      `ssl_options.keyfile = ${path.join(dir, 'key.pem')}`,
      'ssl_options.verify = verify_peer',
      'ssl_options.fail_if_no_peer_cert = true',
      'auth_mechanisms.1 = EXTERNAL',
      'auth_mechanisms.2 = PLAIN',
      'ssl_cert_login_from = common_name',
    );
    plugins = '[rabbitmq_auth_mechanism_ssl].';
  }
  fs.writeFileSync(path.join(dir, 'rabbitmq.conf'), `${conf.join('\n')}\n`);
  fs.writeFileSync(path.join(dir, 'enabled_plugins'), `${plugins}\n`);
  execFileSync('chown', ['-R', 'rabbitmq:rabbitmq', dir]);
  const env = {
    ...process.env,
    RABBITMQ_NODENAME: name,
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq'),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: path.join(dir, 'pid'),
  };
  execFileSync('rabbitmq-server', ['-detached'], { env, stdio: 'ignore' });
  const ctl = async (...args: string[]): Promise<string> => (await execFileP('rabbitmqctl', ['-n', name, ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
  const node: TestNode = {
    name,
    amqpPort,
    tlsPort,
    dir,
    ctl,
    url: (user, password, vhost = '/') => `amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${amqpPort}/${encodeURIComponent(vhost)}`,
    async stop() {
      await ctl('stop').catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  // `-detached` returns before the node is reachable, and await_startup gives up on a node it
  // cannot reach yet: retry until it answers or the deadline passes.
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await ctl('await_startup', '--timeout', '60');
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        const log = fs.readdirSync(path.join(dir, 'log')).map((f) => fs.readFileSync(path.join(dir, 'log', f), 'utf8')).join('\n');
        await node.stop();
        throw new Error(`the test's RabbitMQ node ${name} did not start: ${String(err)}\n${log.slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  return node;
}

/** Throw-away certificates, made with the openssl command in a temporary folder. */
export class TestCerts {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'amqp-tunnel-certs-'));
  readonly ca = this.file('ca.pem');
  readonly caKey = this.file('ca.key');

  constructor() {
    fs.writeFileSync(
      this.file('ca.cnf'),
      [
        '[ ca ]', 'default_ca = CA_default', '[ CA_default ]', `database = ${this.file('index.txt')}`,
        `new_certs_dir = ${this.dir}`, `serial = ${this.file('serial')}`, 'default_md = sha256', 'policy = any',
        'copy_extensions = copy', 'unique_subject = no', '[ any ]', 'commonName = supplied', '',
      ].join('\n'),
    );
    fs.writeFileSync(this.file('index.txt'), '');
    fs.writeFileSync(this.file('serial'), '01\n');
    this.openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=amqp-tunnel test CA', '-keyout', this.caKey, '-out', this.ca);
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  /**
   * A key and certificate for `cn`: signed by the CA (default), self-signed
   * ('self'), or signed by the CA with a validity that ended in 2020 ('expired').
   * `san` adds a subjectAltName (for a broker's certificate).
   */
  issue(label: string, cn: string, how: 'ca' | 'self' | 'expired' = 'ca', san?: string): { cert: string; key: string } {
    const key = this.file(`${label}.key`);
    const cert = this.file(`${label}.pem`);
    const csr = this.file(`${label}.csr`);
    const ext = san ? ['-addext', `subjectAltName=${san}`] : [];
    if (how === 'self') {
      this.openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${cn}`, ...ext, '-keyout', key, '-out', cert);
      return { cert, key };
    }
    this.openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, ...ext, '-keyout', key, '-out', csr);
    const dates = how === 'expired' ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '2'];
    this.openssl('ca', '-batch', '-config', this.file('ca.cnf'), '-cert', this.ca, '-keyfile', this.caKey, '-in', csr, ...dates, '-out', cert);
    return { cert, key };
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { stdio: 'ignore' });
  }
}
