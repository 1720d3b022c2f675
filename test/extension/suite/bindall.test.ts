/**
 * A forward on every interface (0.0.0.0, ::) reaches this machine's network
 * and, through the tunnel, whatever the queue is published from (a debug
 * port: code execution there). In a real VS Code, each way of starting one
 * asks first with a warning notification, answered here as a user would (in the
 * browser): Forward port over AMQP, Restart, and a debug configuration's
 * `amqpTunnel` property that restarts a stopped forward. (Kept tunnels at
 * startup: kept.test.ts.) Declining starts nothing and says how to bind
 * 127.0.0.1.
 */
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import type { TunnelSummary } from '../../../src/extension/services';
import type { DebugFailure } from '../../../src/extension/debug';
import { COMMANDS } from '../../../src/extension/ids';
import { ALL_INTERFACES_ACTION } from '../../../src/extension/tunnelSecrets';
import { freePort } from '../../../src/tunnel/spec';
import { publish, type PublishTunnel } from '../../../src/tunnel';
import { clearNotifications, clickNotificationButton, connectError, echoServer, extensionApi, notificationText, roundTrip, run, uniqueQueue, useTestBroker } from './helpers';

describe('a forward on every interface asks first', function () {
  this.timeout(90_000);
  const BROKER = `bindall-broker-${process.pid}`;
  let api: AmqpTunnelApi;
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let publisher: PublishTunnel;
  let queue: string;
  let port: number;

  useTestBroker(BROKER);

  before(async () => {
    api = await extensionApi();
    echo = await echoServer();
    queue = uniqueQueue('bindall');
    port = await freePort();
    publisher = publish({ queue, broker: 'amqp://guest:guest@127.0.0.1:5672', target: `127.0.0.1:${echo.port}` });
    await publisher.ready;
  });

  after(async () => {
    for (const e of api.manager.list().filter((x) => x.spec.queue === queue)) await api.manager.remove(e);
    await publisher?.stop();
    await echo?.close();
  });

  const question = (): string => `Forward '${queue}' on every network interface (0.0.0.0:${port})?`;
  const why = (): RegExp =>
    new RegExp(`listening on every network interface \\(0\\.0\\.0\\.0:${port}\\) for queue '${queue}' was not confirmed — to keep the forward to this machine, bind 127\\.0\\.0\\.1:${port} instead`);

  it('Forward port over AMQP on 0.0.0.0: Cancel starts nothing and says why; "Listen on All Interfaces" starts it', async () => {
    await clearNotifications();
    const declined = run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: `0.0.0.0:${port}` });
    const asked = await clickNotificationButton(question(), 'Cancel');
    assert.match(asked, new RegExp(`Anyone who can reach this machine on port ${port}.*bind 127\\.0\\.0\\.1:${port} instead`), asked);
    assert.equal(await declined, undefined, 'the command started nothing');
    assert.equal(api.manager.list().some((e) => e.spec.queue === queue), false, 'no forward is listed');
    assert.equal(await connectError(`127.0.0.1:${port}`), 'ECONNREFUSED', 'nothing listens');
    assert.match(await notificationText(`Could not start forward ${queue}`), why());

    await clearNotifications();
    const accepted = run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: `0.0.0.0:${port}` });
    await clickNotificationButton(question(), ALL_INTERFACES_ACTION);
    const fwd = await accepted;
    assert.ok(fwd, 'the forward started');
    assert.equal(fwd.address, `0.0.0.0:${port}`);
    assert.equal(await roundTrip(`127.0.0.1:${port}`, 'through every interface'), 'through every interface');
  });

  it('Restart and a debug configuration\'s amqpTunnel property ask again for a stopped one; declining keeps it stopped and cancels the launch', async () => {
    const entry = api.manager.list().find((e) => e.spec.queue === queue);
    assert.ok(entry, 'the forward of the first test is listed');
    await run(COMMANDS.stop, { id: entry.id });
    assert.equal(entry.state, 'stopped');

    // Restart: Cancel leaves it stopped.
    await clearNotifications();
    const restart = run(COMMANDS.restart, { id: entry.id });
    await clickNotificationButton(question(), 'Cancel');
    await restart;
    assert.equal(entry.state, 'stopped', 'Restart started nothing');
    assert.equal(await connectError(`127.0.0.1:${port}`), 'ECONNREFUSED');

    // F5 on a configuration with the amqpTunnel property restarts the stopped forward of its queue: asks too.
    await clearNotifications();
    const failure = new Promise<DebugFailure>((resolve) => {
      const d = api.debug.onDidReportFailure((f) => (d.dispose(), resolve(f)));
    });
    const launch = vscode.debug.startDebugging(vscode.workspace.workspaceFolders![0], {
      type: 'node',
      request: 'attach',
      name: 'Attach on every interface',
      amqpTunnel: { queue, broker: BROKER },
    });
    await clickNotificationButton(question(), 'Cancel');
    assert.equal(await launch, false, 'the launch was cancelled');
    const f = await failure;
    assert.match(f.message, /^Cannot start 'Attach on every interface': could not forward queue/);
    assert.match(f.message, why());
    assert.equal(entry.state, 'stopped', 'the forward was not started');
    assert.equal(await connectError(`127.0.0.1:${port}`), 'ECONNREFUSED');
  });
});
