/**
 * Tunnel secrets in a real VS Code against the real broker: Set Tunnel
 * Secret (per broker, per queue) reaches the tunnel, a publisher in this
 * process with the same secret serves it and one with another refuses it,
 * and the secret shows up nowhere a user (or a screenshot) could see it.
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import type { TunnelSummary } from '../../../src/extension/services';
import { COMMANDS, CONFIG_SECTION } from '../../../src/extension/ids';
import { publish, type PublishTunnel } from '../../../src/tunnel';
import { EXTENSION_ID, echoServer, extensionApi, roundTrip, run, splitAddress, treeItems, uniqueQueue, waitFor, useTestBroker } from './helpers';
import { readZip } from './zip';

describe('tunnel secrets in a real VS Code', function () {
  const BROKER = `secret-broker-${process.pid}`;
  const SECRET = `vscode-secret-${randomBytes(8).toString('hex')}`;
  const WRONG = `vscode-wrong-${randomBytes(8).toString('hex')}`;
  let api: AmqpTunnelApi;
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let publisher: PublishTunnel | undefined;
  const started: TunnelSummary[] = [];

  useTestBroker(BROKER);

  before(async () => {
    api = await extensionApi();
    echo = await echoServer();
  });

  after(async () => {
    for (const s of started) {
      const e = api.manager.get(s.id);
      if (e) await api.manager.remove(e);
    }
    await publisher?.stop();
    await echo.close();
    await run(COMMANDS.setTunnelSecret, { broker: BROKER, secret: '' });
  });

  /** Connect, write, and resolve when the connection closes: 'echoed' or 'reset'. */
  async function attempt(address: string): Promise<'echoed' | 'reset'> {
    const { host, port } = splitAddress(address);
    const s = net.connect({ host, port });
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('error', () => undefined);
    s.end('ping');
    await new Promise((r) => s.once('close', r));
    return got === 'ping' ? 'echoed' : 'reset';
  }

  it('a forward uses the broker\'s secret; a per-queue secret overrides it; the wrong one is refused in words', async () => {
    const queue = uniqueQueue('secret');
    publisher = publish({ queue, broker: 'amqp://guest:guest@127.0.0.1:5672', target: `127.0.0.1:${echo.port}`, secret: SECRET });
    await publisher.ready;

    assert.equal(await run<boolean>(COMMANDS.setTunnelSecret, { broker: BROKER, secret: SECRET }), true);
    const fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: '127.0.0.1:0' });
    assert.ok(fwd, 'forward started');
    started.push(fwd);
    assert.equal(await roundTrip(fwd.address, 'with the secret'), 'with the secret');

    assert.equal(await run<boolean>(COMMANDS.setTunnelSecret, { broker: BROKER, queue, secret: WRONG }), true);
    await run(COMMANDS.restart, { id: fwd.id });
    const entry = api.manager.get(fwd.id)!;
    await waitFor(api, 'the forward is ready again', () => entry.state === 'ready');
    assert.equal(await attempt(entry.localAddress), 'reset');
    await waitFor(api, 'the log says the secret does not match', () => api.log.lines().some((l) => /the tunnel secret does not match/.test(l)));

    // The secret is nowhere a user can see it: log, view, settings.
    const visible = [
      ...api.log.lines(),
      ...treeItems(api).flatMap((i) => [i.label, i.description, i.tooltip]),
      JSON.stringify(vscode.workspace.getConfiguration(CONFIG_SECTION)),
      JSON.stringify(vscode.workspace.getConfiguration(CONFIG_SECTION).inspect('brokers')),
      JSON.stringify(vscode.workspace.getConfiguration(CONFIG_SECTION).inspect('tunnels')),
    ].join('\n');
    for (const s of [SECRET, WRONG]) assert.ok(!visible.includes(s), 'a tunnel secret is visible');
  });

  it('the packaged .vsix holds no test, dev or key file, and no tunnel secret or broker password the tests use', () => {
    // `npm run test:extension` packages dist/amqp-tunnel.vsix (scripts/package-vsix.js) before VS Code starts.
    const root = vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath;
    const vsix = path.join(root, 'dist', 'amqp-tunnel.vsix');
    assert.ok(fs.existsSync(vsix), `${vsix} is missing: run npm run package`);
    const entries = readZip(fs.readFileSync(vsix));
    const names = entries.map((e) => e.name);
    assert.ok(names.includes('extension/dist/extension.js') && names.includes('extension/package.json'), `the archive reads as a .vsix: ${names.join(', ')}`);
    const forbidden = names.filter((n) => /(^|\/)\.env[^/]*$|\.(key|pem)$|(^|\/)test\/|(^|\/)\.test-output\//.test(n));
    assert.deepEqual(forbidden, [], 'files that must never be packaged');
    // What would give a secret away: this run's tunnel secrets, the fixed secrets and passwords of
    // every test (read from the test sources, so a new one is covered), and the markers of the
    // random ones (test/integration/security.test.ts's leak test, this file).
    const literals = fs
      .readdirSync(path.join(root, 'test'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .flatMap((f) => [...fs.readFileSync(path.join(root, 'test', f), 'utf8').matchAll(/const [A-Z_]*(?:SECRET|PASSWORD)[A-Z_]* = '([^']+)'/g)].map((m) => m[1]!));
    assert.ok(literals.length >= 2, `found the tests' fixed secrets: ${literals.length}`);
    const needles = [SECRET, WRONG, ...literals, 'vscode-secret-', 'vscode-wrong-', 'Leak-Pw-', 'Leak-Secret-'];
    for (const e of entries) {
      const text = e.data.toString('latin1');
      // The message names which needle, never the secret itself.
      needles.forEach((needle, i) => assert.ok(!text.includes(needle), `${e.name} holds test secret #${i} of the list`));
    }
  });

  it('refuses a secret shorter than 16 bytes', async () => {
    assert.equal(await run<boolean>(COMMANDS.setTunnelSecret, { broker: BROKER, queue: 'short-one', secret: 'tiny' }), false);
  });
});
