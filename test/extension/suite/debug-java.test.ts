/**
 * The `amqpTunnel` property on a Java attach configuration, against a real
 * JVM's JDWP agent on the far side of the tunnel.
 *
 * The Java debugger extension cannot be installed here (no marketplace), and
 * VS Code lets only the extension that defines a debug type (with a label)
 * register its adapter, so VS Code cannot run a "java" session here. The
 * test calls the extension's debug configuration provider as VS Code does
 * after the preLaunchTask, then does what the Java debugger does first with
 * the result: connect to `hostName`:`port`, perform the JDWP handshake and
 * ask the VM for its version. That proves the provider wrote the fields the
 * Java debugger reads, and that a real JVM answers through the tunnel.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import { EXTENSION_ID, extensionApi, uniqueQueue, useTestBroker } from './helpers';

const BROKER = 'java-debug-broker';

/** Connect, handshake, send VirtualMachine.Version (command set 1, command 1); resolve with the VM's description. */
function jdwpVersion(host: string, port: number): Promise<{ description: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let buf = Buffer.alloc(0);
    let shaken = false;
    socket.on('error', reject);
    socket.on('connect', () => socket.write('JDWP-Handshake'));
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!shaken) {
        if (buf.length < 14) return;
        if (buf.subarray(0, 14).toString() !== 'JDWP-Handshake') return reject(new Error(`not a JDWP agent: ${buf.toString()}`));
        shaken = true;
        buf = buf.subarray(14);
        const cmd = Buffer.alloc(11);
        cmd.writeUInt32BE(11, 0);
        cmd.writeUInt32BE(1, 4);
        cmd.writeUInt8(0, 8);
        cmd.writeUInt8(1, 9);
        cmd.writeUInt8(1, 10);
        socket.write(cmd);
      }
      if (buf.length >= 4 && buf.length >= buf.readUInt32BE(0)) {
        const error = buf.readUInt16BE(9);
        if (error !== 0) return reject(new Error(`JDWP error ${error}`));
        const len = buf.readUInt32BE(11);
        resolve({ description: buf.subarray(15, 15 + len).toString('utf8'), socket });
      }
    });
  });
}

describe('debugging a remote JVM through a tunnel (amqpTunnel on a "java" attach configuration)', function () {
  this.timeout(90_000);
  let api: AmqpTunnelApi;
  const stops: Array<() => void> = [];
  const queue = uniqueQueue('java');

  useTestBroker(BROKER);

  before(async () => {
    api = await extensionApi();
  });

  after(async () => {
    for (const s of stops.reverse()) s();
  });

  it('the provider writes hostName and port, and the JVM answers JDWP through the forward', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jdwp-'));
    stops.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'Sleep.java'), 'public class Sleep { public static void main(String[] a) throws Exception { Thread.sleep(600000); } }\n');
    const jvm = spawn('java', ['-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=127.0.0.1:0', path.join(dir, 'Sleep.java')], { stdio: ['ignore', 'pipe', 'pipe'] });
    stops.push(() => jvm.kill('SIGKILL'));
    let out = '';
    const jdwpPort = await new Promise<string>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        out += d.toString();
        const m = out.match(/Listening for transport dt_socket at address: (\d+)/);
        if (m) resolve(m[1]);
      };
      jvm.stdout!.on('data', onData);
      jvm.stderr!.on('data', onData);
      jvm.once('error', (err) => reject(new Error(`cannot start java (a JDK must be installed): ${err.message}`)));
      jvm.once('exit', (code) => reject(new Error(`java exited with ${code}: ${out}`)));
    });
    const cli = path.join(vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath, 'dist', 'cli.js');
    const publisher = spawn(process.execPath, [cli, 'publish', jdwpPort, '--queue', queue, '--json'], {
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

    const folder = vscode.workspace.workspaceFolders![0];
    const config = await api.debug.provider.resolveDebugConfigurationWithSubstitutedVariables(folder, {
      type: 'java',
      request: 'attach',
      name: 'Attach to Java over AMQP',
      amqpTunnel: { queue, broker: BROKER },
    });
    assert.ok(config, 'the configuration was resolved, not cancelled');
    const entry = api.manager.list().find((e) => e.spec.queue === queue);
    assert.ok(entry, 'the forward is in the Tunnels view');
    assert.equal(config.hostName, '127.0.0.1');
    assert.equal(config.port, Number(entry.localAddress.split(':')[1]));
    assert.equal(config.address, undefined, 'no Node.js fields on a Java configuration');
    const { description, socket } = await jdwpVersion(config.hostName as string, config.port as number);
    assert.match(description, /Java Debug Wire Protocol/);
    assert.ok((entry.stats()?.totalConnections ?? 0) >= 1, 'through the tunnel');
    socket.destroy();
    await api.manager.remove(entry);
    assert.equal(jvm.exitCode, null, 'the JVM keeps running after the debugger detached');
  });
});
