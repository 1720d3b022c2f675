/**
 * Debugging through tunnels, inside a real VS Code with its built-in
 * JavaScript debugger (js-debug), against the real broker at 127.0.0.1:5672:
 * a Node program started with --inspect=127.0.0.1:0 is published with the
 * amqp-tunnel CLI (dist/cli.js) as the remote side would, and VS Code
 * attaches through a forward started by each of the three ways in.
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { freePort } from '../../../src/tunnel/spec';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import type { DebugFailure } from '../../../src/extension/debug';
import { COMMANDS, TASK_TYPE } from '../../../src/extension/ids';
import type { TunnelSummary } from '../../../src/extension/services';
import { FaultProxy } from '../../integration/faultproxy';
import { debuggerPickItems } from '../../../src/extension/debug/attach';
import { EXTENSION_ID, answerQuickPick, clearNotifications, clickNotificationButton, connectError, extensionApi, itemOf, quickInputShowing, run, typeIntoQuickInput, uniqueQueue, waitFor, workbenchPage, useTestBroker } from './helpers';

const BROKER = 'debug-broker';

/** A child process with its output kept, and a way to wait for a line. */
class Child {
  output = '';
  private waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess) {
    const add = (d: Buffer): void => {
      this.output += d.toString();
      for (const w of this.waiters.splice(0)) w();
    };
    proc.stdout?.on('data', add);
    proc.stderr?.on('data', add);
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }
  async waitFor(re: RegExp, what: string, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.output.match(re);
      if (m) return m;
      if (this.proc.exitCode !== null || Date.now() > deadline) throw new Error(`${what}: not seen (exit ${this.proc.exitCode}); output:\n${this.output}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 250);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  stop(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
  }
}

function node(args: string[], env: NodeJS.ProcessEnv = {}): Child {
  // The extension host is Node (VS Code server) or Electron (test-electron): run Electron as Node.
  return new Child(spawn(process.execPath, args, { env: { ...process.env, ELECTRON_RUN_AS_NODE: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** The "remote" side: a Node program under --inspect, published on `queue` with the amqp-tunnel CLI. */
async function remoteNodeProgram(queue: string): Promise<{ debuggee: Child; publisher: Child; stop: () => void }> {
  const debuggee = node(['--inspect=127.0.0.1:0', '-e', 'setInterval(() => {}, 1000)']);
  const port = (await debuggee.waitFor(/Debugger listening on ws:\/\/127\.0\.0\.1:(\d+)\//, 'the inspector port'))[1];
  const cli = path.join(vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath, 'dist', 'cli.js');
  const publisher = node([cli, 'publish', port, '--queue', queue, '--json'], { AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672' });
  await publisher.waitFor(/"event":"ready"/, 'amqp-tunnel publish ready');
  return {
    debuggee,
    publisher,
    stop: () => {
      publisher.stop();
      debuggee.stop();
    },
  };
}


/** Sessions started from now on, and a way to wait for the one that can evaluate in the target. */
function watchSessions(): { sessions: vscode.DebugSession[]; ended: vscode.DebugSession[]; dispose: () => void } {
  const sessions: vscode.DebugSession[] = [];
  const ended: vscode.DebugSession[] = [];
  const a = vscode.debug.onDidStartDebugSession((s) => sessions.push(s));
  const b = vscode.debug.onDidTerminateDebugSession((s) => ended.push(s));
  return { sessions, ended, dispose: () => (a.dispose(), b.dispose()) };
}

/** A request that may never be answered (a session without a target) must not hang the test. */
function withTimeout<T>(p: Thenable<T>, ms: number, what: string): Promise<T> {
  return Promise.race([Promise.resolve(p), new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms))]);
}

/**
 * Ask the debugger to evaluate `expression` (default `process.pid`, which
 * tells the debuggee from any other Node process) in the remote program.
 * js-debug attaches with a root session and one child session per target:
 * try the children first, then the active session.
 */
async function evaluate(watch: { sessions: vscode.DebugSession[] }, expression = 'process.pid'): Promise<string> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    const children = watch.sessions.filter((s) => s.parentSession);
    const candidates = [...new Set([...children, vscode.debug.activeDebugSession].filter((s): s is vscode.DebugSession => !!s))];
    for (const s of candidates) {
      try {
        const r = await withTimeout(s.customRequest('evaluate', { expression, context: 'repl' }) as Thenable<{ result: string }>, 3000, s.name);
        return r.result;
      } catch (err) {
        last = `${s.name}: ${(err as Error).message}`;
      }
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`no debug session could evaluate: ${last}`);
}

async function until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stop the root session and wait until every session it started has ended. */
async function endSessions(watch: { sessions: vscode.DebugSession[]; ended: vscode.DebugSession[] }): Promise<void> {
  const roots = watch.sessions.filter((s) => !s.parentSession);
  for (const r of roots) await vscode.debug.stopDebugging(r);
  await until('every debug session ended', () => watch.sessions.every((s) => watch.ended.includes(s)));
}

function nextFailure(api: AmqpTunnelApi): Promise<DebugFailure> {
  return new Promise((resolve) => {
    const d = api.debug.onDidReportFailure((f) => {
      d.dispose();
      resolve(f);
    });
  });
}

describe('debugging a remote Node program through a tunnel', function () {
  this.timeout(90_000);
  let api: AmqpTunnelApi;
  let folder: vscode.WorkspaceFolder;
  let remote: Awaited<ReturnType<typeof remoteNodeProgram>>;
  const queue = uniqueQueue('debug');
  const emptyQueue = uniqueQueue('debug-nobody');
  let taskPort: number;
  let shortPort: number;

  const readyForwards = () => api.manager.list().filter((e) => e.spec.kind === 'forward' && e.state === 'ready');

  /**
   * Run `body` with exactly `count` ready forwards of the queue, started as a
   * user would: other ready forwards are stopped meanwhile (with several the
   * command variable asks which) and restarted afterwards.
   */
  async function withReadyForwards(count: number, body: (started: TunnelSummary[]) => Promise<void>): Promise<void> {
    const others = readyForwards();
    for (const e of others) await api.manager.stop(e);
    const started: TunnelSummary[] = [];
    try {
      for (let i = 0; i < count; i++) {
        // An explicit port: a second forward of the queue on port 0 would reuse the first.
        const fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: `127.0.0.1:${await freePort()}` });
        assert.ok(fwd);
        started.push(fwd);
      }
      await body(started);
    } finally {
      for (const f of started) await run(COMMANDS.remove, { id: f.id });
      for (const e of others) await api.manager.restart(e).catch(() => undefined);
    }
  }

  useTestBroker(BROKER);

  before(async function () {
    api = await extensionApi();
    folder = vscode.workspace.workspaceFolders![0];
    remote = await remoteNodeProgram(queue);
    taskPort = await freePort();
    shortPort = await freePort();
    // tasks.json as a user writes it (README "Debug a remote Node/Python/Java process").
    const tasks = {
      version: '2.0.0',
      tasks: [
        { label: 'tunnel to the app', type: TASK_TYPE, queue, broker: BROKER, localPort: taskPort, isBackground: true, problemMatcher: '$amqp-tunnel' },
        // The short form: the task supplies isBackground and its problem matcher itself.
        { label: 'tunnel, short form', type: TASK_TYPE, queue, broker: BROKER, localPort: shortPort },
        { label: 'tunnel to nobody', type: TASK_TYPE, queue: emptyQueue, broker: BROKER, localPort: await freePort(), isBackground: true, problemMatcher: '$amqp-tunnel' },
      ],
    };
    fs.mkdirSync(path.join(folder.uri.fsPath, '.vscode'), { recursive: true });
    fs.writeFileSync(path.join(folder.uri.fsPath, '.vscode', 'tasks.json'), JSON.stringify(tasks, null, 2));
    // launch.json with an input that names the queue (README, way 3).
    const launch = {
      version: '0.2.0',
      configurations: [{ type: 'node', request: 'attach', name: 'Attach with an input', address: '127.0.0.1', port: '${input:appPort}' }],
      inputs: [{ id: 'appPort', type: 'command', command: COMMANDS.localPort, args: { queue, broker: BROKER } }],
    };
    fs.writeFileSync(path.join(folder.uri.fsPath, '.vscode', 'launch.json'), JSON.stringify(launch, null, 2));
    const deadline = Date.now() + 20_000;
    for (;;) {
      const found = await vscode.tasks.fetchTasks({ type: TASK_TYPE });
      if (['tunnel to the app', 'tunnel, short form', 'tunnel to nobody'].every((n) => found.some((t) => t.name === n))) break;
      if (Date.now() > deadline) throw new Error(`tasks.json was not picked up: ${found.map((t) => t.name).join(', ')}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  after(async () => {
    remote?.stop();
  });

  it('a launch configuration with an amqp-tunnel preLaunchTask attaches; the task keeps the forward until it is terminated', async () => {
    const watch = watchSessions();
    try {
      const ended = new Promise<void>((resolve) => {
        const d = vscode.tasks.onDidEndTask((e) => {
          if (e.execution.task.name !== 'tunnel to the app') return;
          d.dispose();
          resolve();
        });
      });
      const ok = await vscode.debug.startDebugging(folder, {
        type: 'node',
        request: 'attach',
        name: 'Attach through the task',
        address: '127.0.0.1',
        port: taskPort,
        preLaunchTask: 'tunnel to the app',
      });
      assert.equal(ok, true, 'the session started');
      assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
      const entry = api.manager.list().find((e) => e.spec.queue === queue && e.spec.kind === 'forward');
      assert.ok(entry, 'the forward is in the Tunnels view');
      assert.equal(entry.localAddress, `127.0.0.1:${taskPort}`);
      // The debugger's own connection goes through the forward, not only its HTTP discovery:
      // a 64 KiB answer to an evaluate comes back through the tunnel while the session is attached.
      const before = entry.stats()!.streamToTcp;
      assert.equal(await evaluate(watch, "'x'.repeat(65536).length"), '65536');
      await evaluate(watch, "'x'.repeat(65536)");
      assert.ok(entry.stats()!.streamToTcp - before >= 65536, `the answer came through the tunnel (${entry.stats()!.streamToTcp - before} bytes)`);
      assert.ok(entry.stats()!.activeConnections >= 1, 'the debugger keeps its connection open through the tunnel');
      await endSessions(watch);
      assert.equal(remote.debuggee.proc.exitCode, null, 'detaching leaves the remote program running');
      assert.equal(entry.state, 'ready', 'the task still holds the forward');
      const execution = vscode.tasks.taskExecutions.find((e) => e.task.name === 'tunnel to the app');
      assert.ok(execution, 'the task is running');
      execution.terminate();
      await withTimeout(ended, 10_000, 'the task ends when terminated');
      await waitFor(api, 'the forward the task started is gone', () => !api.manager.get(entry.id));
      assert.equal(await connectError(`127.0.0.1:${taskPort}`), 'ECONNREFUSED', 'the local port is closed');
    } finally {
      watch.dispose();
    }
  });

  it('a task written without isBackground and problemMatcher works the same (the task type supplies them)', async () => {
    const watch = watchSessions();
    try {
      const ok = await vscode.debug.startDebugging(folder, {
        type: 'node',
        request: 'attach',
        name: 'Attach through the short task',
        address: '127.0.0.1',
        port: shortPort,
        preLaunchTask: 'tunnel, short form',
      });
      assert.equal(ok, true, 'the session started');
      assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
      await endSessions(watch);
    } finally {
      watch.dispose();
      vscode.tasks.taskExecutions.find((e) => e.task.name === 'tunnel, short form')?.terminate();
      await waitFor(api, 'the short task\'s forward is gone', () => !api.manager.list().some((e) => e.localAddress === `127.0.0.1:${shortPort}`));
    }
  });

  it('a configuration with an amqpTunnel property attaches, and its forward stops when the session ends', async () => {
    const watch = watchSessions();
    try {
      const ok = await vscode.debug.startDebugging(folder, {
        type: 'node',
        request: 'attach',
        name: 'Attach with amqpTunnel',
        amqpTunnel: { queue, broker: BROKER },
      });
      assert.equal(ok, true, 'the session started');
      assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
      const root = watch.sessions.find((s) => !s.parentSession)!;
      const entry = api.manager.list().find((e) => e.spec.queue === queue && e.spec.kind === 'forward');
      assert.ok(entry, 'the forward is in the Tunnels view');
      const port = Number(entry.localAddress.split(':')[1]);
      assert.equal(root.configuration.port, port, 'js-debug was given the forward\'s port');
      assert.equal(root.configuration.address, '127.0.0.1');
      await endSessions(watch);
      await waitFor(api, 'the forward started for the session is gone', () => !api.manager.get(entry.id));
      assert.equal(await connectError(entry.localAddress), 'ECONNREFUSED');
      assert.equal(remote.debuggee.proc.exitCode, null);
    } finally {
      watch.dispose();
    }
  });

  it('F5 while a forward of the queue is stopped restarts that forward (no duplicate) and stops it again when the session ends', async () => {
    const fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: '127.0.0.1:0' });
    assert.ok(fwd);
    const watch = watchSessions();
    try {
      await run(COMMANDS.stop, { id: fwd.id });
      const ok = await vscode.debug.startDebugging(folder, { type: 'node', request: 'attach', name: 'Attach with a stopped forward', amqpTunnel: { queue, broker: BROKER } });
      assert.equal(ok, true);
      assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
      const forwards = api.manager.list().filter((e) => e.spec.kind === 'forward' && e.spec.queue === queue);
      assert.deepEqual(forwards.map((e) => e.id), [fwd.id], 'the stopped forward was restarted, none added');
      assert.equal(watch.sessions.find((x) => !x.parentSession)!.configuration.port, Number(fwd.address.split(':')[1]));
      await endSessions(watch);
      await waitFor(api, 'the forward is stopped again, still listed', () => api.manager.get(fwd.id)?.state === 'stopped');
    } finally {
      watch.dispose();
      await run(COMMANDS.remove, { id: fwd.id });
    }
  });

  it('${command:amqpTunnel.localPort} gives the port of the ready forward', async () => {
    await withReadyForwards(1, async (started) => {
      const fwd = started[0]!;
      const watch = watchSessions();
      try {
        const ok = await vscode.debug.startDebugging(folder, {
          type: 'node',
          request: 'attach',
          name: 'Attach with the command variable',
          address: '127.0.0.1',
          port: '${command:amqpTunnel.localPort}',
        });
        assert.equal(ok, true, 'the session started');
        assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
        const root = watch.sessions.find((s) => !s.parentSession)!;
        assert.equal(root.configuration.port, Number(fwd.address.split(':')[1]));
        await endSessions(watch);
        assert.equal(api.manager.get(fwd.id)?.state, 'ready', 'a forward the user started keeps running');
      } finally {
        watch.dispose();
      }
    });
  });

  it('${command:amqpTunnel.localPort} with several ready forwards asks which one and gives the port of the one picked', async () => {
    await withReadyForwards(2, async () => {
      const watch = watchSessions();
      try {
        // The pick lists the ready forwards in the view's order; Enter takes the first.
        const ready = readyForwards();
        assert.equal(ready.length, 2);
        const launch = vscode.debug.startDebugging(folder, {
          type: 'node',
          request: 'attach',
          name: 'Attach through a picked forward',
          address: '127.0.0.1',
          port: '${command:amqpTunnel.localPort}',
        });
        assert.equal(await answerQuickPick(launch, 'accept'), true, 'the session started once a forward was picked');
        assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
        const root = watch.sessions.find((s) => !s.parentSession)!;
        assert.equal(root.configuration.port, Number(ready[0].localAddress.split(':')[1]), 'the port of the forward picked');
        await endSessions(watch);
      } finally {
        watch.dispose();
      }
    });
  });

  it('${command:amqpTunnel.localPort} with several ready forwards: escaping the pick cancels the launch', async () => {
    await withReadyForwards(2, async (started) => {
      const watch = watchSessions();
      try {
        const launch = vscode.debug.startDebugging(folder, {
          type: 'node',
          request: 'attach',
          name: 'Attach, then change my mind',
          address: '127.0.0.1',
          port: '${command:amqpTunnel.localPort}',
        });
        assert.equal(await answerQuickPick(launch, 'escape'), false, 'the launch was cancelled');
        assert.equal(watch.sessions.length, 0, 'no debugger was started');
        for (const f of started) assert.equal(api.manager.get(f.id)?.state, 'ready', 'the forwards keep running');
      } finally {
        watch.dispose();
      }
    });
  });

  it('${command:amqpTunnel.localPort} with no ready forward offers to start one; dismissing the offer cancels the launch', async () => {
    await withReadyForwards(0, async () => {
      const watch = watchSessions();
      try {
        const launch = Promise.resolve(
          vscode.debug.startDebugging(folder, {
            type: 'node',
            request: 'attach',
            name: 'Attach with nothing forwarded',
            address: '127.0.0.1',
            port: '${command:amqpTunnel.localPort}',
          }),
        );
        // The offer is a notification: the launch waits on it until the user answers or closes it.
        let settled = false;
        void launch.finally(() => (settled = true));
        await new Promise((r) => setTimeout(r, 1000));
        assert.equal(settled, false, 'the launch waits for an answer to the offer');
        const deadline = Date.now() + 15_000;
        while (!settled && Date.now() < deadline) {
          await vscode.commands.executeCommand('notifications.clearAll');
          await new Promise((r) => setTimeout(r, 250));
        }
        assert.equal(await launch, false, 'the launch was cancelled');
        assert.equal(watch.sessions.length, 0, 'no debugger was started');
        assert.equal(readyForwards().length, 0, 'no forward was started');
      } finally {
        watch.dispose();
      }
    });
  });

  it('${command:amqpTunnel.localPort} with no ready forward: accepting the offer runs "Forward port over AMQP" and the launch attaches through the forward it started', async () => {
    await withReadyForwards(0, async () => {
      const watch = watchSessions();
      const port = await freePort();
      try {
        await clearNotifications();
        const launch = vscode.debug.startDebugging(folder, {
          type: 'node',
          request: 'attach',
          name: 'Attach after starting a forward',
          address: '127.0.0.1',
          port: '${command:amqpTunnel.localPort}',
          // js-debug gives up after 10 s by default; the prompts typed in the page come first
          // (on a loaded CI machine it failed with "Could not find any debuggable target").
          timeout: 30_000,
        });
        // As a user: the offer's button, then the Forward command's prompts (broker, queue, local port).
        await clickNotificationButton('No forward over AMQP is ready', 'Forward port over AMQP');
        if ((await quickInputShowing(['Which broker?', 'Type a queue name'])) === 'Which broker?') await typeIntoQuickInput('Which broker?', BROKER);
        await typeIntoQuickInput('Type a queue name', queue);
        // A stopped forward of the queue (other tests') is offered for reuse first: start another one.
        if ((await quickInputShowing(['is forwarded already', 'Local port to listen on'])) === 'is forwarded already') {
          await typeIntoQuickInput('is forwarded already', 'Start another forward');
        }
        await typeIntoQuickInput('Local port to listen on', `127.0.0.1:${port}`);
        assert.equal(await launch, true, 'the session started');
        const started = readyForwards().filter((e) => e.localAddress === `127.0.0.1:${port}`);
        assert.equal(started.length, 1, 'the offer started a forward on the port typed');
        assert.equal(started[0].spec.queue, queue);
        assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
        const root = watch.sessions.find((x) => !x.parentSession)!;
        assert.equal(root.configuration.port, port, 'the variable resolved to the port of the forward started');
        await endSessions(watch);
        assert.equal(started[0].state, 'ready', 'the forward the user started keeps running');
      } finally {
        watch.dispose();
        for (const e of api.manager.list().filter((x) => x.localAddress === `127.0.0.1:${port}`)) await api.manager.remove(e);
      }
    });
  });

  it('an input running amqpTunnel.localPort with a queue starts the forward without asking (launch.json by name)', async () => {
    const watch = watchSessions();
    try {
      const deadline = Date.now() + 20_000;
      while (!vscode.workspace.getConfiguration('launch', folder.uri).get<Array<{ name: string }>>('configurations')?.some((c) => c.name === 'Attach with an input')) {
        if (Date.now() > deadline) throw new Error('launch.json was not picked up');
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(await vscode.debug.startDebugging(folder, 'Attach with an input'), true, 'the session started');
      assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
      const root = watch.sessions.find((s) => !s.parentSession)!;
      const entry = api.manager.list().find((e) => e.spec.queue === queue && e.state === 'ready');
      assert.ok(entry, 'the command started a forward of the queue');
      assert.equal(root.configuration.port, Number(entry.localAddress.split(':')[1]));
      await endSessions(watch);
      await api.manager.remove(entry);
    } finally {
      watch.dispose();
    }
  });

  it('launch.json offers the "over AMQP" attach snippets (Add Configuration...)', async () => {
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(path.join(folder.uri.fsPath, '.vscode', 'launch.json')));
    const text = doc.getText();
    // Inside the configurations array, just after its "[".
    const at = doc.positionAt(text.indexOf('[', text.indexOf('"configurations"')) + 1);
    const deadline = Date.now() + 30_000;
    let labels: string[] = [];
    const want = ['Attach to Node.js over AMQP', 'Attach to Python over AMQP', 'Attach to Java over AMQP'];
    while (Date.now() < deadline) {
      const list = await vscode.commands.executeCommand<vscode.CompletionList>('vscode.executeCompletionItemProvider', doc.uri, at);
      labels = list.items.map((i) => (typeof i.label === 'string' ? i.label : i.label.label));
      if (want.every((w) => labels.includes(w))) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    for (const w of want) assert.ok(labels.includes(w), `"${w}" is offered among ${JSON.stringify(labels)}`);
  });

  it('Attach Debugger on a forward in the Tunnels view starts a Node session on its local address', async () => {
    const watch = watchSessions();
    let fwd: TunnelSummary | undefined;
    try {
      fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: '127.0.0.1:0' });
      assert.ok(fwd);
      assert.match(itemOf(api, 'forward', queue).contextValue, /^tunnel;kind=forward;.*;running;/, 'the item offers Attach Debugger (package.json menus)');
      assert.equal(await run<boolean>(COMMANDS.attachDebugger, { id: fwd.id, type: 'node' }), true);
      assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
      const root = watch.sessions.find((s) => !s.parentSession)!;
      assert.equal(root.configuration.port, Number(fwd.address.split(':')[1]));
      await endSessions(watch);
      assert.equal(api.manager.get(fwd.id)?.state, 'ready', 'the forward keeps running');
    } finally {
      watch.dispose();
      if (fwd) await run(COMMANDS.remove, { id: fwd.id });
    }
  });

  it('Attach Debugger without a debug type asks what runs on the remote side; Node.js attaches, escaping starts nothing', async () => {
    const watch = watchSessions();
    let fwd: TunnelSummary | undefined;
    try {
      fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: '127.0.0.1:0' });
      assert.ok(fwd);
      assert.equal(await answerQuickPick(run<boolean>(COMMANDS.attachDebugger, { id: fwd.id }), 'escape'), false, 'escaping the pick attaches nothing');
      assert.equal(watch.sessions.length, 0, 'no debugger was started');
      // Node.js is the first choice.
      assert.equal(await answerQuickPick(run<boolean>(COMMANDS.attachDebugger, { id: fwd.id }), 'accept'), true);
      assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
      const root = watch.sessions.find((s) => !s.parentSession)!;
      assert.equal(root.configuration.port, Number(fwd.address.split(':')[1]));
      assert.equal(root.configuration.address, '127.0.0.1');
      await endSessions(watch);
      assert.equal(api.manager.get(fwd.id)?.state, 'ready', 'the forward keeps running');
    } finally {
      watch.dispose();
      if (fwd) await run(COMMANDS.remove, { id: fwd.id });
    }
  });

  it('Attach Debugger from the palette with several ready forwards asks which one, then what runs there, and attaches through the one picked', async () => {
    await withReadyForwards(2, async () => {
      const watch = watchSessions();
      try {
        const ready = readyForwards();
        assert.equal(ready.length, 2);
        // As a user: the second forward (the view's order; not the one a missing pick would take), then Node.js (the first debugger).
        const attached = run<boolean>(COMMANDS.attachDebugger);
        await quickInputShowing(['Attach through which forward?']);
        const page = await workbenchPage();
        await page.keyboard.press('ArrowDown');
        await page.keyboard.press('Enter');
        await typeIntoQuickInput('What runs on the remote side?', undefined);
        assert.equal(await attached, true, 'a session started');
        assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
        const root = watch.sessions.find((x) => !x.parentSession)!;
        assert.equal(root.configuration.port, Number(ready[1].localAddress.split(':')[1]), 'through the forward picked');
        await endSessions(watch);
      } finally {
        watch.dispose();
      }
    });
  });

  it('Attach Debugger in the Tunnels view with nothing published fails at once with the message F5 gives, and starts no debugger', async () => {
    const watch = watchSessions();
    let fwd: TunnelSummary | undefined;
    try {
      fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue: emptyQueue, bind: '127.0.0.1:0' });
      assert.ok(fwd, 'a forward of a queue nobody publishes starts (it listens locally)');
      const failure = nextFailure(api);
      const t0 = Date.now();
      assert.equal(await run<boolean>(COMMANDS.attachDebugger, { id: fwd.id, type: 'node' }), false, 'nothing was attached');
      assert.ok(Date.now() - t0 < 5000, `failed within 5 s (took ${Date.now() - t0} ms)`);
      const f = await withTimeout(failure, 1000, 'the failure notification');
      assert.match(
        f.message,
        new RegExp(`^Cannot start 'Attach to ${emptyQueue} over AMQP': nothing is published on queue '${emptyQueue}' at amqp://guest@127\\.0\\.0\\.1:5672 \\(broker '${BROKER}'\\) — start the publisher on the remote machine`),
      );
      assert.equal(watch.sessions.length, 0, 'no debugger was started');
    } finally {
      watch.dispose();
      if (fwd) await run(COMMANDS.remove, { id: fwd.id });
    }
  });

  it('Attach Debugger offers only installed debuggers as ready; a missing one names its extension and offers the Extensions view', async () => {
    assert.equal(vscode.extensions.getExtension('ms-python.debugpy'), undefined, 'no Python debugger in this VS Code');
    assert.equal(vscode.extensions.getExtension('vscjava.vscode-java-debug'), undefined, 'no Java debugger in this VS Code');
    const watch = watchSessions();
    let fwd: TunnelSummary | undefined;
    try {
      fwd = await run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER, queue, bind: '127.0.0.1:0' });
      assert.ok(fwd);
      const failure = nextFailure(api);
      assert.equal(await run<boolean>(COMMANDS.attachDebugger, { id: fwd.id, type: 'debugpy' }), false);
      const f = await withTimeout(failure, 5000, 'the failure notification');
      assert.match(f.message, /needs the Python Debugger extension \(ms-python\.debugpy\), which is not installed/);
      assert.deepEqual(f.actions, ['Show in Extensions']);
      assert.equal(watch.sessions.length, 0, 'no debugger was started');
      const items = debuggerPickItems();
      const desc = (label: string): string | undefined => items.find((i) => i.label === label)?.description;
      assert.equal(desc('Node.js'), 'type "node"', 'js-debug is built in');
      assert.equal(desc('Python (debugpy)'), 'not installed: needs the Python Debugger extension (ms-python.debugpy)');
      assert.equal(desc('Java'), 'not installed: needs the Debugger for Java extension (vscjava.vscode-java-debug)');
      assert.equal(desc('Go (Delve)'), 'not installed: needs the Go extension (golang.go)');
    } finally {
      watch.dispose();
      if (fwd) await run(COMMANDS.remove, { id: fwd.id });
    }
  });

  it('the broker connection cut during a session: the user is told, and the tunnel shows reconnecting, then ready', async () => {
    const proxy = await new FaultProxy().start();
    const watch = watchSessions();
    try {
      await run(COMMANDS.addBroker, { name: 'flaky-debug-broker', url: `amqp://127.0.0.1:${proxy.port}` });
      const ok = await vscode.debug.startDebugging(folder, {
        type: 'node',
        request: 'attach',
        name: 'Attach through a flaky broker',
        amqpTunnel: { queue, broker: 'flaky-debug-broker' },
      });
      assert.equal(ok, true);
      assert.equal(await evaluate(watch), String(remote.debuggee.proc.pid), 'attached to the debuggee itself');
      const warned = new Promise<DebugFailure>((resolve) => {
        const d = api.debug.onDidWarn((w) => {
          d.dispose();
          resolve(w);
        });
      });
      proxy.cutAll();
      const w = await withTimeout(warned, 15_000, 'a warning');
      assert.match(w.message, new RegExp(`^Debug session 'Attach through a flaky broker': the forward of queue '${queue}' .* lost broker 'flaky-debug-broker' .* reconnecting`));
      await waitFor(api, 'the forward shows reconnecting', () => itemOf(api, 'forward', queue).icon === 'sync~spin');
      proxy.resume();
      await waitFor(api, 'the forward is ready again', () => itemOf(api, 'forward', queue).icon === 'pass-filled');
      await endSessions(watch);
      await waitFor(api, 'the forward started for the session is gone', () => !api.manager.list().some((e) => e.spec.broker === 'flaky-debug-broker'));
    } finally {
      watch.dispose();
      await proxy.close();
      await run(COMMANDS.removeBroker, { name: 'flaky-debug-broker' });
    }
  });

  it('nothing published on the queue: the amqpTunnel launch fails at once, naming the queue and the broker', async () => {
    const watch = watchSessions();
    try {
      const failure = nextFailure(api);
      const t0 = Date.now();
      const ok = await vscode.debug.startDebugging(folder, {
        type: 'node',
        request: 'attach',
        name: 'Attach to nobody',
        amqpTunnel: { queue: emptyQueue, broker: BROKER },
      });
      assert.equal(ok, false, 'the launch was cancelled');
      assert.ok(Date.now() - t0 < 5000, `failed within 5 s (took ${Date.now() - t0} ms)`);
      const f = await failure;
      assert.match(f.message, new RegExp(`^Cannot start 'Attach to nobody': nothing is published on queue '${emptyQueue}' at amqp://guest@127\\.0\\.0\\.1:5672 \\(broker '${BROKER}'\\)`));
      assert.equal(watch.sessions.length, 0, 'no debugger was started');
      assert.equal(api.manager.list().filter((e) => e.spec.queue === emptyQueue).length, 0, 'no forward was left behind');
    } finally {
      watch.dispose();
    }
  });

  it('broker down: the launch fails at once with the broker\'s name, address and the cause', async () => {
    const port = await freePort(); // nothing listens there
    await run(COMMANDS.addBroker, { name: 'down-debug-broker', url: `amqp://127.0.0.1:${port}` });
    const watch = watchSessions();
    try {
      const failure = nextFailure(api);
      const ok = await vscode.debug.startDebugging(folder, {
        type: 'node',
        request: 'attach',
        name: 'Attach while the broker is down',
        amqpTunnel: { queue, broker: 'down-debug-broker' },
      });
      assert.equal(ok, false);
      const f = await failure;
      assert.match(f.message, new RegExp(`^Cannot start 'Attach while the broker is down': broker 'down-debug-broker' \\(amqp://127\\.0\\.0\\.1:${port}\\): cannot reach the broker at 127\\.0\\.0\\.1:${port}: connection refused`));
      assert.equal(watch.sessions.length, 0, 'no debugger was started');
      assert.equal(api.manager.list().filter((e) => e.spec.broker === 'down-debug-broker').length, 0, 'no forward was left behind');
    } finally {
      watch.dispose();
      await run(COMMANDS.removeBroker, { name: 'down-debug-broker' });
    }
  });

  it('nothing published on the queue: the preLaunchTask fails with exit code 1 and the launch is cancelled with the cause', async () => {
    const watch = watchSessions();
    try {
      const failure = nextFailure(api);
      const ended = new Promise<number | undefined>((resolve) => {
        const d = vscode.tasks.onDidEndTaskProcess((e) => {
          if (e.execution.task.name !== 'tunnel to nobody') return;
          d.dispose();
          resolve(e.exitCode);
        });
      });
      const t0 = Date.now();
      const ok = await vscode.debug.startDebugging(folder, {
        type: 'node',
        request: 'attach',
        name: 'Attach to nobody through the task',
        port: 9,
        preLaunchTask: 'tunnel to nobody',
      });
      assert.equal(ok, false, 'the launch was cancelled');
      assert.ok(Date.now() - t0 < 10_000, `failed within 10 s (took ${Date.now() - t0} ms)`);
      const f = await failure;
      assert.match(f.message, new RegExp(`nothing is published on queue '${emptyQueue}' at amqp://guest@127\\.0\\.0\\.1:5672 \\(broker '${BROKER}'\\)`));
      assert.equal(await ended, 1, 'the task ended with exit code 1');
      assert.equal(watch.sessions.length, 0, 'no debugger was started');
    } finally {
      watch.dispose();
    }
  });
});
