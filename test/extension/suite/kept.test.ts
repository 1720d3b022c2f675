/**
 * Kept tunnels in a trusted workspace: the runner's workspace settings keep
 * a publish and a forward of one queue; they start when the window opens.
 * A third, a forward on every interface (0.0.0.0), asks first: declined here.
 */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import * as vscode from 'vscode';
import { CONFIG_SECTION, SETTINGS } from '../../../src/extension/ids';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import { EXTENSION_ID, clickNotificationButton, connectError, itemOf, notificationText, roundTrip, splitAddress, waitFor } from './helpers';

/** VS Code activates the extension at startup (onStartupFinished): wait for that, no test activates it. */
async function activatedAtStartup(): Promise<AmqpTunnelApi> {
  const ext = vscode.extensions.getExtension<AmqpTunnelApi>(EXTENSION_ID);
  assert.ok(ext, `${EXTENSION_ID} is installed`);
  const deadline = Date.now() + 30_000;
  while (!ext.isActive) {
    if (Date.now() > deadline) throw new Error('VS Code did not activate the extension at startup within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return ext.exports;
}

describe('kept tunnels in a trusted workspace', () => {
  it('a kept forward on every interface asks before it starts; declining starts nothing and says how to bind 127.0.0.1', async () => {
    const kept = vscode.workspace.getConfiguration(CONFIG_SECTION).get<Array<Record<string, string>>>(SETTINGS.tunnels) ?? [];
    const all = kept.find((k) => k.forward && k.bind.startsWith('0.0.0.0:'));
    assert.ok(all, 'the runner kept a forward on 0.0.0.0');
    const port = splitAddress(all.bind).port;
    const api = await activatedAtStartup();
    // The warning a user sees at startup: Cancel.
    const asked = await clickNotificationButton(`Forward '${all.forward}' on every network interface`, 'Cancel', 30_000);
    assert.match(asked, new RegExp(`port ${port}.*bind 127\\.0\\.0\\.1:${port} instead`), asked);
    await api.restored;
    assert.equal(api.manager.list().some((e) => e.spec.queue === all.forward), false, 'the forward is not started');
    assert.equal(await connectError(`127.0.0.1:${port}`), 'ECONNREFUSED', 'nothing listens on its port');
    const why = await notificationText(`Could not start forward ${all.forward}`);
    assert.match(why, new RegExp(`listening on every network interface \\(0\\.0\\.0\\.0:${port}\\) for queue '${all.forward}' was not confirmed — to keep the forward to this machine, bind 127\\.0\\.0\\.1:${port} instead`), why);
    assert.ok(api.log.lines().some((l) => l.includes(`forward ${all.forward}: listening on every network interface`)), 'the log says why');
  });

  it('start when the window opens (VS Code activates the extension at startup, no test does), and carry data', async () => {
    assert.equal(vscode.workspace.isTrusted, true);
    // This file runs first (suite/files.ts): nothing has called activate() yet, so only VS Code's
    // own activation at startup (onStartupFinished) can start the kept tunnels.
    const api = await activatedAtStartup();
    await api.restored;
    const kept = vscode.workspace.getConfiguration(CONFIG_SECTION).get<Array<Record<string, string>>>(SETTINGS.tunnels) ?? [];
    const pub = kept.find((k) => k.publish)!;
    const fwd = kept.find((k) => k.forward && k.bind.startsWith('127.0.0.1:'))!;
    assert.ok(pub && fwd, 'the runner kept a publish and a forward');
    await waitFor(api, 'both kept tunnels are ready', () => itemOf(api, 'publish', pub.queue).icon === 'pass-filled' && itemOf(api, 'forward', fwd.forward).icon === 'pass-filled');
    assert.match(itemOf(api, 'forward', fwd.forward).contextValue, /;kept$/);
    assert.equal(itemOf(api, 'forward', fwd.forward).broker, 'kept-broker');

    // The publish target is a port the runner picked; serve on it now and go through the forward.
    const server = net.createServer((s) => s.end('from the kept publisher'));
    server.listen(splitAddress(pub.publish).port, '127.0.0.1');
    await once(server, 'listening');
    try {
      assert.equal(await roundTrip(fwd.bind, ''), 'from the kept publisher');
    } finally {
      server.close();
    }
  });
});
