/**
 * The extension against the real broker at 127.0.0.1:5672 (guest/guest):
 * commands end to end, the Tunnels view, stop/restart, secrets.
 */
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import type { TunnelSummary } from '../../../src/extension/services';
import { COMMANDS, CONFIG_SECTION, SETTINGS, SHOW_VIEW_COMMAND } from '../../../src/extension/ids';
import { FaultProxy } from '../../integration/faultproxy';
import { connectError, echoServer, entryOf, extensionApi, itemOf, roundTrip, run, treeItems, uniqueQueue, waitFor, useTestBroker } from './helpers';

const BROKER = 'test-broker';

describe('AMQP Tunnel in a real VS Code', function () {
  let api: AmqpTunnelApi;
  let echo: Awaited<ReturnType<typeof echoServer>>;
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
    await echo.close();
  });

  async function publishAndForward(what: string): Promise<{ queue: string; pub: TunnelSummary; fwd: TunnelSummary }> {
    const queue = uniqueQueue(what);
    const pub = await run<TunnelSummary | undefined>(COMMANDS.publish, { broker: BROKER, target: `127.0.0.1:${echo.port}`, queue });
    assert.ok(pub, 'publish started');
    started.push(pub);
    const fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: '127.0.0.1:0' });
    assert.ok(fwd, 'forward started');
    started.push(fwd);
    return { queue, pub, fwd };
  }

  it('registers every command of the manifest', async () => {
    const all = new Set(await vscode.commands.getCommands(true));
    for (const id of Object.values(COMMANDS)) assert.ok(all.has(id), `${id} is registered`);
  });

  it('keeps the broker URL in settings without the password', () => {
    const brokers = vscode.workspace.getConfiguration(CONFIG_SECTION).get<Array<{ name: string; url: string }>>(SETTINGS.brokers) ?? [];
    const b = brokers.find((x) => x.name === BROKER);
    assert.deepEqual(b, { name: BROKER, url: 'amqp://guest@127.0.0.1:5672' });
  });

  it('Publish and Forward carry data from a TCP client through the broker to a TCP server and back', async () => {
    const { queue, pub, fwd } = await publishAndForward('e2e');
    assert.equal(pub.state, 'ready');
    assert.equal(fwd.state, 'ready');
    assert.match(fwd.address, /^127\.0\.0\.1:[1-9]\d*$/, 'port 0 became a real port');
    const text = 'hello through RabbitMQ '.repeat(1000);
    assert.equal(await roundTrip(fwd.address, text), text);

    const f = itemOf(api, 'forward', queue);
    assert.equal(f.broker, BROKER);
    assert.equal(f.label, queue, 'the row starts with the queue (what a narrow side bar still shows)');
    assert.equal(f.icon, 'pass-filled');
    assert.ok(f.description.startsWith(`forward · ${fwd.address} · ready`), f.description);
    const p = itemOf(api, 'publish', queue);
    assert.equal(p.label, queue);
    assert.ok(p.description.startsWith(`publish · 127.0.0.1:${echo.port} · ready`), p.description);
    // The counts reach the tooltip once the connection closed on both tunnels.
    await waitFor(api, 'both tooltips count the connection and its bytes', () =>
      [itemOf(api, 'forward', queue), itemOf(api, 'publish', queue)].every((i) => /0 open, 1 in all/.test(i.tooltip) && /22 KiB sent/.test(i.tooltip)),
    );
    assert.match(api.statusBar.item.text, /tunnels? ready/);
  });

  it('shows the open connection count live in the description, as the view renders it', async () => {
    const { fwd } = await publishAndForward('live');
    // What the view shows: VS Code re-reads an item only when the tree fires a change for it
    // (or for everything), so keep the rendering from the last change event, as the view does.
    const node = api.tree.getChildren().flatMap((b) => api.tree.getChildren(b)).find((n) => n.type === 'tunnel' && n.entry.id === fwd.id)!;
    assert.ok(node, 'the forward has a row');
    let shown = String(api.tree.getTreeItem(node).description);
    const sub = api.tree.onDidChangeTreeData((changed) => {
      if (changed === undefined || changed === node) shown = String(api.tree.getTreeItem(node).description);
    });
    const net = await import('node:net');
    const [host, port] = [fwd.address.split(':')[0], Number(fwd.address.split(':')[1])];
    const socket = net.connect({ host, port });
    try {
      await new Promise((r) => socket.once('connect', r));
      socket.write('ping');
      await waitFor(api, 'the row shows 1 connection', () => /· 1 connection ·/.test(shown));
      socket.write('x'.repeat(3000));
      await waitFor(api, 'the row shows the bytes of the open connection', () => /↑2\.9 KiB/.test(shown), 5000);
    } finally {
      socket.destroy();
    }
    await waitFor(api, 'the row shows 0 connections', () => /· 0 connections ·/.test(shown));
    sub.dispose();
  });

  it('Stop Tunnel frees the local port and shows stopped; Restart Tunnel listens on the same port again', async () => {
    const { queue, fwd } = await publishAndForward('stop');
    await run(COMMANDS.stop, { id: fwd.id });
    const stopped = itemOf(api, 'forward', queue);
    assert.equal(stopped.icon, 'circle-slash');
    assert.equal(stopped.description, `forward · ${fwd.address} · stopped`);
    assert.match(stopped.contextValue, /;idle;/, 'the context menu offers Restart, not Stop');
    assert.equal(await connectError(fwd.address), 'ECONNREFUSED');

    await run(COMMANDS.restart, { id: fwd.id });
    assert.equal(entryOf(api, fwd).state, 'ready');
    assert.equal(entryOf(api, fwd).localAddress, fwd.address, 'same local address after restart');
    assert.equal(await roundTrip(fwd.address, 'again'), 'again');
    assert.equal(itemOf(api, 'forward', queue).icon, 'pass-filled');
  });

  it('Remove Tunnel stops the tunnel and takes it out of the view', async () => {
    const { queue, pub } = await publishAndForward('remove');
    await run(COMMANDS.remove, { id: pub.id });
    assert.equal(treeItems(api).filter((i) => i.description.startsWith('publish') && i.label.includes(queue)).length, 0);
    assert.equal(api.manager.get(pub.id), undefined);
  });

  it('Copy Local Address puts the forward address on the clipboard', async () => {
    const { fwd } = await publishAndForward('copy');
    const copied = await run<string>(COMMANDS.copyAddress, { id: fwd.id });
    assert.equal(copied, fwd.address);
    assert.equal(await vscode.env.clipboard.readText(), fwd.address);
  });

  it('shows reconnecting while the broker is unreachable, and ready again when it is back', async () => {
    const proxy = await new FaultProxy().start();
    try {
      await run(COMMANDS.addBroker, { name: 'flaky-broker', url: `amqp://127.0.0.1:${proxy.port}` });
      const queue = uniqueQueue('flaky');
      const pub = await run<TunnelSummary | undefined>(COMMANDS.publish, { broker: 'flaky-broker', target: `127.0.0.1:${echo.port}`, queue });
      assert.ok(pub);
      started.push(pub);
      proxy.cutAll();
      await waitFor(api, 'publish shows reconnecting', () => itemOf(api, 'publish', queue).icon === 'sync~spin');
      const item = itemOf(api, 'publish', queue);
      assert.ok(item.description.startsWith(`publish · 127.0.0.1:${echo.port} · reconnecting`), item.description);
      assert.match(item.tooltip, /Last error: /);
      assert.match(api.statusBar.item.text, /ready/);
      assert.ok(api.statusBar.item.backgroundColor, 'the status bar item is highlighted while a tunnel reconnects');
      proxy.resume();
      await waitFor(api, 'publish is ready again', () => itemOf(api, 'publish', queue).icon === 'pass-filled');
      // Ready again means usable again: a forward through the real broker reaches the echo server.
      const fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: '127.0.0.1:0' });
      assert.ok(fwd);
      started.push(fwd);
      assert.equal(await roundTrip(fwd.address, 'back'), 'back');
    } finally {
      await proxy.close();
      await run(COMMANDS.removeBroker, { name: 'flaky-broker' });
    }
  });

  it('shows failed with the reason when the broker cannot be reached, without a stack trace', async () => {
    const { port } = await echoServer().then(async (s) => {
      await s.close();
      return s;
    });
    await run(COMMANDS.addBroker, { name: 'nobody-broker', url: `amqp://127.0.0.1:${port}` });
    try {
      const queue = uniqueQueue('nobody');
      const res = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: 'nobody-broker', queue, bind: '127.0.0.1:0' });
      assert.equal(res, undefined, 'the command reports the failure instead of a tunnel');
      const item = itemOf(api, 'forward', queue);
      assert.equal(item.icon, 'error');
      assert.match(item.description, /^forward · 127\.0\.0\.1:\d+ · failed$/);
      assert.match(item.tooltip, /Last error: .*127\.0\.0\.1/);
      assert.doesNotMatch(item.tooltip, /\n\s+at /, 'no stack trace');
      const e = api.manager.list().find((x) => x.spec.queue === queue)!;
      await api.manager.remove(e);
    } finally {
      await run(COMMANDS.removeBroker, { name: 'nobody-broker' });
    }
  });

  it('a wrong password fails with a login error, never shown or logged; Set Broker Password fixes it', async () => {
    const wrong = `wrong-pw-${Date.now().toString(36)}`;
    await run(COMMANDS.addBroker, { name: 'locked-broker', url: 'amqp://guest@127.0.0.1:5672', password: wrong });
    try {
      const queue = uniqueQueue('locked');
      const res = await run<TunnelSummary | undefined>(COMMANDS.publish, { broker: 'locked-broker', target: `127.0.0.1:${echo.port}`, queue });
      assert.equal(res, undefined);
      const item = itemOf(api, 'publish', queue);
      assert.equal(item.icon, 'error');
      assert.match(item.tooltip, /Last error: .*(password|login|refused|ACCESS)/i);

      const settings = JSON.stringify(vscode.workspace.getConfiguration(CONFIG_SECTION).inspect(SETTINGS.brokers));
      assert.ok(!settings.includes(wrong), 'the password is not in settings');
      assert.ok(!JSON.stringify(treeItems(api)).includes(wrong), 'the password is not in the view');
      assert.ok(!api.log.lines().join('\n').includes(wrong), 'the password is not in the log');
      assert.ok(api.log.lines().some((l) => l.startsWith('error: publish ' + queue)), 'the failure is in the log');

      // Fixing the password restarts the tunnel that failed on the login: no Restart needed.
      const e = api.manager.list().find((x) => x.spec.queue === queue)!;
      const fixed = await run<{ restarted: TunnelSummary[] } | undefined>(COMMANDS.setBrokerPassword, { name: 'locked-broker', password: 'guest' });
      assert.deepEqual(fixed?.restarted.map((r) => [r.id, r.state]), [[e.id, 'ready']], 'the failed tunnel was restarted with the new password');
      assert.equal(e.state, 'ready', 'the stored password is used');
      assert.equal(itemOf(api, 'publish', queue).icon, 'pass-filled');
      await api.manager.remove(e);
    } finally {
      await run(COMMANDS.removeBroker, { name: 'locked-broker' });
    }
  });

  it('a login refused for a user whose password is the user name (as guest/guest) names the user in the notification and the log', async () => {
    const user = `same-${Date.now().toString(36)}`;
    await run(COMMANDS.addBroker, { name: 'same-broker', url: `amqp://${user}@127.0.0.1:5672`, password: user });
    try {
      const queue = uniqueQueue('same');
      const res = await run<TunnelSummary | undefined>(COMMANDS.publish, { broker: 'same-broker', target: `127.0.0.1:${echo.port}`, queue });
      assert.equal(res, undefined);
      const item = itemOf(api, 'publish', queue);
      assert.match(item.tooltip, new RegExp(`refused the login of user '${user}'`), 'the tooltip names the user');
      const logged = api.log.lines().filter((l) => l.startsWith(`error: publish ${queue}`));
      assert.equal(logged.length, 1, 'the failure is logged once');
      assert.match(logged[0], new RegExp(`refused the login of user '${user}'`), 'the log names the user');
      assert.ok(!api.log.lines().some((l) => l.includes('***')), 'nothing in the log was masked as ***');
      await api.manager.remove(api.manager.list().find((x) => x.spec.queue === queue)!);
    } finally {
      await run(COMMANDS.removeBroker, { name: 'same-broker' });
    }
  });

  it('Add Broker moves a password typed in the URL to the secret store; Remove Broker forgets it', async () => {
    await run(COMMANDS.addBroker, { name: 'inline-broker', url: 'amqp://guest:guest@127.0.0.1:5672' });
    const stored = (vscode.workspace.getConfiguration(CONFIG_SECTION).get<Array<{ name: string; url: string }>>(SETTINGS.brokers) ?? []).find(
      (b) => b.name === 'inline-broker',
    );
    assert.equal(stored?.url, 'amqp://guest@127.0.0.1:5672');
    assert.equal(await api.brokers.hasPassword('inline-broker'), true);
    const queue = uniqueQueue('inline');
    const pub = await run<TunnelSummary | undefined>(COMMANDS.publish, { broker: 'inline-broker', target: `127.0.0.1:${echo.port}`, queue });
    assert.equal(pub?.state, 'ready', 'connected with the password from the secret store');
    started.push(pub);

    await run(COMMANDS.removeBroker, { name: 'inline-broker' });
    assert.equal(api.brokers.get('inline-broker'), undefined);
    assert.equal(await api.brokers.hasPassword('inline-broker'), false, 'the password went with the broker');
  });

  it('Keep Tunnel saves the tunnel in workspace settings; Stop Keeping Tunnel removes it', async () => {
    const { queue, fwd } = await publishAndForward('keep');
    await run(COMMANDS.keep, { id: fwd.id });
    const kept = (): unknown[] => vscode.workspace.getConfiguration(CONFIG_SECTION).inspect<unknown[]>(SETTINGS.tunnels)?.workspaceValue ?? [];
    assert.deepEqual(
      kept().filter((k) => (k as { forward?: string }).forward === queue),
      [{ forward: queue, bind: fwd.address, broker: BROKER }],
    );
    assert.match(itemOf(api, 'forward', queue).contextValue, /;kept$/);
    assert.match(itemOf(api, 'forward', queue).tooltip, /kept \(starts with the workspace\)/);
    await run(COMMANDS.forget, { id: fwd.id });
    assert.equal(kept().filter((k) => (k as { forward?: string }).forward === queue).length, 0);
    assert.match(itemOf(api, 'forward', queue).contextValue, /;unkept$/);
  });

  it('Forward of a queue that has a forward already uses that one (restarting it when stopped) instead of adding a duplicate', async () => {
    const { queue, fwd } = await publishAndForward('dup');
    const again = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue });
    assert.equal(again?.id, fwd.id, 'the running forward is used');
    await run(COMMANDS.stop, { id: fwd.id });
    const restarted = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: '127.0.0.1:0' });
    assert.equal(restarted?.id, fwd.id, 'the stopped forward is restarted');
    assert.equal(restarted?.state, 'ready');
    assert.equal(restarted?.address, fwd.address, 'on its port');
    assert.equal(treeItems(api).filter((i) => i.label === queue && i.description.startsWith('forward')).length, 1, 'one forward row for the queue');
    assert.equal(await roundTrip(fwd.address, 'once'), 'once');
  });

  it('the status bar counts the rows of the view: a stopped row counts as not ready', async () => {
    const { fwd } = await publishAndForward('count');
    await run(COMMANDS.stop, { id: fwd.id });
    const rows = treeItems(api);
    const ready = rows.filter((i) => i.icon === 'pass-filled').length;
    assert.ok(rows.length > ready, 'a row is not ready');
    assert.equal(api.statusBar.item.text, `$(plug) ${ready}/${rows.length} tunnels ready`);
    await run(COMMANDS.restart, { id: fwd.id });
    assert.equal(api.statusBar.item.text, `$(plug) ${ready + 1}/${rows.length} tunnels ready`);
  });

  it('a configured broker stays in the view when its last tunnel is removed', async () => {
    await run(COMMANDS.addBroker, { name: 'empty-broker', url: 'amqp://guest@127.0.0.1:5672', password: 'guest' });
    try {
      const queue = uniqueQueue('empty');
      const pub = await run<TunnelSummary | undefined>(COMMANDS.publish, { broker: 'empty-broker', target: `127.0.0.1:${echo.port}`, queue });
      assert.ok(pub);
      await run(COMMANDS.remove, { id: pub.id });
      const root = api.tree.getChildren().map((n) => api.tree.getTreeItem(n));
      const b = root.find((i) => i.label === 'empty-broker');
      assert.ok(b, `the broker is a top-level row: ${JSON.stringify(root.map((i) => i.label))}`);
      assert.equal(b.description, 'amqp://guest@127.0.0.1:5672 · no tunnels');
      assert.equal(b.contextValue, 'broker', 'its context menu offers Set Broker Password and Remove Broker');
    } finally {
      await run(COMMANDS.removeBroker, { name: 'empty-broker' });
    }
    assert.ok(!api.tree.getChildren().some((n) => n.type === 'broker' && n.name === 'empty-broker'), 'a removed broker leaves the view');
  });

  it('a ready forward whose queue nobody publishes says so while the view is visible, and shows ready once a publisher starts', async () => {
    await vscode.commands.executeCommand(SHOW_VIEW_COMMAND);
    const queue = uniqueQueue('presence');
    const fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: '127.0.0.1:0' });
    assert.ok(fwd);
    started.push(fwd);
    await waitFor(api, 'the forward says nobody publishes the queue', () => itemOf(api, 'forward', queue).description.includes('ready · nobody publishes this queue'), 10_000);
    assert.equal(itemOf(api, 'forward', queue).icon, 'circle-large-outline');
    assert.match(itemOf(api, 'forward', queue).tooltip, /Publisher: none/);
    const pub = await run<TunnelSummary | undefined>(COMMANDS.publish, { broker: BROKER, target: `127.0.0.1:${echo.port}`, queue });
    assert.ok(pub);
    started.push(pub);
    await waitFor(api, 'the forward shows ready with a publisher', () => itemOf(api, 'forward', queue).icon === 'pass-filled', 10_000);
    assert.match(itemOf(api, 'forward', queue).tooltip, /Publisher: present/);
    assert.ok(!itemOf(api, 'forward', queue).description.includes('nobody'));
  });

  it('a stopped row offers neither Copy Local Address nor Open in Browser (package.json menus need ;running;)', async () => {
    const { queue, fwd } = await publishAndForward('menus');
    assert.match(itemOf(api, 'forward', queue).contextValue, /;running;/);
    await run(COMMANDS.stop, { id: fwd.id });
    assert.doesNotMatch(itemOf(api, 'forward', queue).contextValue, /;running;/);
  });

  it('never writes a broker password into the log', () => {
    const log = api.log.lines().join('\n');
    assert.doesNotMatch(log, /amqps?:\/\/[^@\s/]*:[^@\s/]+@/, 'no URL with a password');
  });
});
