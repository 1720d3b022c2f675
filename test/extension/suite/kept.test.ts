/**
 * Kept tunnels in a trusted workspace: the runner's workspace settings keep
 * a publish and a forward of one queue; they start when the window opens.
 */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import * as vscode from 'vscode';
import { CONFIG_SECTION, SETTINGS } from '../../../src/extension/ids';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import { EXTENSION_ID, itemOf, roundTrip, splitAddress, waitFor } from './helpers';

describe('kept tunnels in a trusted workspace', () => {
  it('start when the window opens (VS Code activates the extension at startup, no test does), and carry data', async () => {
    assert.equal(vscode.workspace.isTrusted, true);
    // This file runs first (suite/files.ts): nothing has called activate() yet, so only VS Code's
    // own activation at startup (onStartupFinished) can start the kept tunnels.
    const ext = vscode.extensions.getExtension<AmqpTunnelApi>(EXTENSION_ID);
    assert.ok(ext, `${EXTENSION_ID} is installed`);
    const deadline = Date.now() + 30_000;
    while (!ext.isActive) {
      if (Date.now() > deadline) throw new Error('VS Code did not activate the extension at startup within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    const api = ext.exports;
    await api.restored;
    const kept = vscode.workspace.getConfiguration(CONFIG_SECTION).get<Array<Record<string, string>>>(SETTINGS.tunnels) ?? [];
    const pub = kept.find((k) => k.publish)!;
    const fwd = kept.find((k) => k.forward)!;
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
