/**
 * The `amqpTunnel` property on a Python (debugpy) attach configuration,
 * against a real debugpy on the far side of the tunnel (Debian's
 * python3-debugpy, installed by .ci/extension-setup.sh).
 *
 * The Python extension cannot be installed here (no marketplace), and VS
 * Code lets only the extension that defines a debug type register its
 * adapter, so the test calls the extension's debug configuration provider as
 * VS Code does after the preLaunchTask, then does what the Python debugger
 * does first with the result: connect to `connect.host`:`connect.port` and
 * send DAP "initialize". debugpy answering proves the provider wrote the
 * fields debugpy's attach reads, and that debugpy is reached through the tunnel.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { freePort } from '../../../src/tunnel/spec';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import { EXTENSION_ID, extensionApi, uniqueQueue, useTestBroker } from './helpers';

const BROKER = 'python-debug-broker';
// Debian's python3-debugpy lives in the system Python, which a pyenv or venv on PATH may hide.
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';


/**
 * True when something listens on 127.0.0.1:port, read from /proc/net/tcp:
 * a test connection would not do, debugpy takes the first connection as its
 * client and closes shop when it goes away.
 */
function listening(port: number): boolean {
  const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return fs
    .readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[1] === want && f[3] === '0A';
    });
}

/** Send DAP "initialize" to host:port and resolve with the response. */
function dapInitialize(host: string, port: number): Promise<{ success: boolean; command: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let buf = Buffer.alloc(0);
    socket.on('error', reject);
    socket.on('connect', () => {
      const body = JSON.stringify({ seq: 1, type: 'request', command: 'initialize', arguments: { adapterID: 'debugpy', clientID: 'amqp-tunnel-test' } });
      socket.write(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const head = buf.indexOf('\r\n\r\n');
        if (head < 0) return;
        const len = Number(/Content-Length: (\d+)/i.exec(buf.subarray(0, head).toString())?.[1]);
        if (buf.length < head + 4 + len) return;
        const msg = JSON.parse(buf.subarray(head + 4, head + 4 + len).toString()) as { type: string; command?: string; success?: boolean };
        buf = buf.subarray(head + 4 + len);
        if (msg.type === 'response' && msg.command === 'initialize') return resolve({ success: !!msg.success, command: msg.command, socket });
      }
    });
  });
}

describe('debugging a remote Python process through a tunnel (amqpTunnel on a "debugpy" attach configuration)', function () {
  this.timeout(60_000);
  let api: AmqpTunnelApi;
  const stops: Array<() => void> = [];
  const queue = uniqueQueue('python');

  useTestBroker(BROKER);

  before(async () => {
    api = await extensionApi();
  });

  after(async () => {
    for (const s of stops.reverse()) s();
  });

  it('the provider writes connect.host and connect.port, and debugpy answers DAP through the forward', async () => {
    const port = await freePort();
    const py = spawn(PYTHON, ['-Xfrozen_modules=off', '-m', 'debugpy', '--listen', `127.0.0.1:${port}`, '-c', 'import time; time.sleep(600)'], { stdio: ['ignore', 'pipe', 'pipe'] });
    stops.push(() => py.kill('SIGKILL'));
    let out = '';
    py.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    py.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const spawnError = new Promise<never>((_, reject) => {
      py.once('error', (err) => reject(new Error(`cannot start ${PYTHON} (python3-debugpy must be installed): ${err.message}`)));
      py.once('exit', (code) => reject(new Error(`${PYTHON} -m debugpy exited with ${code}: ${out}`)));
    });
    spawnError.catch(() => undefined); // observed in the loop below; killing the process at the end is no failure
    // debugpy prints nothing when it listens: wait until the port is listening.
    const deadline = Date.now() + 20_000;
    while (!listening(port)) {
      if (Date.now() > deadline) throw new Error(`debugpy did not listen on ${port}: ${out}`);
      await Promise.race([spawnError, new Promise((r) => setTimeout(r, 200))]);
    }
    const cli = path.join(vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath, 'dist', 'cli.js');
    const publisher = spawn(process.execPath, [cli, 'publish', String(port), '--queue', queue, '--json'], {
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1', AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    stops.push(() => publisher.kill('SIGTERM'));
    await new Promise<void>((resolve, reject) => {
      let text = '';
      publisher.stdout!.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.includes('"event":"ready"')) resolve();
      });
      publisher.once('exit', (code) => reject(new Error(`amqp-tunnel publish exited with ${code}: ${text}`)));
    });

    const config = await api.debug.provider.resolveDebugConfigurationWithSubstitutedVariables(vscode.workspace.workspaceFolders![0], {
      type: 'debugpy',
      request: 'attach',
      name: 'Attach to Python over AMQP',
      amqpTunnel: { queue, broker: BROKER },
    });
    assert.ok(config, 'the configuration was resolved, not cancelled');
    const entry = api.manager.list().find((e) => e.spec.queue === queue);
    assert.ok(entry, 'the forward is in the Tunnels view');
    const connect = config.connect as { host: string; port: number };
    assert.deepEqual(connect, { host: '127.0.0.1', port: Number(entry.localAddress.split(':')[1]) });
    assert.equal(config.port, undefined, 'no stale top-level port');
    const r = await dapInitialize(connect.host, connect.port);
    assert.equal(r.success, true, 'debugpy answered initialize');
    assert.ok((entry.stats()?.totalConnections ?? 0) >= 1, 'through the tunnel');
    r.socket.destroy();
    await api.manager.remove(entry);
    assert.equal(py.exitCode, null, 'the Python process keeps running');
  });
});
