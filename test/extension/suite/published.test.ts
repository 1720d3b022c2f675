/**
 * Find and attach inside a real VS Code: programs published with the CLI
 * (dist/cli.js) appear under "Published on <broker>" in the Tunnels view
 * with their detected protocol, one click attaches js-debug (evaluate 6*7),
 * several selected entries attach at once, a killed publisher disappears,
 * debugpy and a JVM are detected without a connection reaching them, a
 * missing debugger extension is named, the launch.json configuration is
 * copied, and "Forward port over AMQP" offers the discovered queues first.
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import type { PublishedEntryNode, PublishedRootNode } from '../../../src/extension/discoveryTree';
import { COMMANDS, CONFIG_SECTION, SETTINGS, SHOW_VIEW_COMMAND } from '../../../src/extension/ids';
import type { PublishedReport } from '../../../src/extension/discoveryAttach';
import type { TunnelSummary } from '../../../src/extension/services';
import { EXTENSION_ID, answerQuickPick, extensionApi, run, uniqueQueue, useTestBroker } from './helpers';

const BROKER = 'published-broker';
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

class Child {
  output = '';
  constructor(readonly proc: ChildProcess) {
    proc.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
  }
  async waitFor(re: RegExp, what: string, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.output.match(re);
      if (m) return m;
      if (this.proc.exitCode !== null || Date.now() > deadline) throw new Error(`${what}: not seen (exit ${this.proc.exitCode}); output:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
  }
}

function spawnChild(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  return new Child(spawn(cmd, args, { env: { ...process.env, ELECTRON_RUN_AS_NODE: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
}

const cli = (): string => path.join(vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath, 'dist', 'cli.js');

async function publishCli(port: number | string, queue: string): Promise<Child> {
  const p = spawnChild(process.execPath, [cli(), 'publish', String(port), '--queue', queue, '--json'], { AMQP_URL });
  await p.waitFor(/"event":"ready"/, 'amqp-tunnel publish ready');
  return p;
}

/** A Node program under --inspect, published on `queue` with the CLI. */
async function remoteNode(queue: string): Promise<{ debuggee: Child; publisher: Child; stop: () => void }> {
  const debuggee = spawnChild(process.execPath, ['--inspect=127.0.0.1:0', '-e', 'setInterval(() => {}, 1000)']);
  const port = (await debuggee.waitFor(/Debugger listening on ws:\/\/127\.0\.0\.1:(\d+)\//, 'the inspector port'))[1]!;
  const publisher = await publishCli(port, queue);
  return { debuggee, publisher, stop: () => (publisher.kill(), debuggee.kill()) };
}

function root(api: AmqpTunnelApi): PublishedRootNode {
  const r = api.tree.getChildren().find((n) => n.type === 'section' && (n as PublishedRootNode).broker === BROKER);
  assert.ok(r, 'a "Published on" section for the broker');
  return r as PublishedRootNode;
}

function entries(api: AmqpTunnelApi): PublishedEntryNode[] {
  return api.tree.getChildren(root(api)).filter((n): n is PublishedEntryNode => n.type === 'section' && n.kind === 'publishedEntry');
}

/** Wait until the section's entries satisfy `check` (re-checked on every change of the view). */
async function untilListed(api: AmqpTunnelApi, what: string, check: (e: PublishedEntryNode[]) => boolean, timeoutMs = 15_000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (check(entries(api))) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) {
      const seen = api.tree.getChildren(root(api)).map((n) => String(api.tree.getTreeItem(n).label));
      throw new Error(`${what}: not within ${timeoutMs} ms; the section shows ${JSON.stringify(seen)}`);
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 250);
      const sub = api.tree.onDidChangeTreeData(() => {
        clearTimeout(t);
        sub.dispose();
        resolve();
      });
    });
  }
}

const entryFor = (api: AmqpTunnelApi, queue: string): PublishedEntryNode | undefined => entries(api).find((e) => e.info.queue === queue);

function watchSessions(): { sessions: vscode.DebugSession[]; dispose: () => void } {
  const sessions: vscode.DebugSession[] = [];
  const a = vscode.debug.onDidStartDebugSession((s) => sessions.push(s));
  return { sessions, dispose: () => a.dispose() };
}

/** Evaluate 6*7 in the program behind the root session named `name` (js-debug answers in a child session). */
async function evaluateIn(watch: { sessions: vscode.DebugSession[] }, name: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    const rootSession = watch.sessions.find((s) => !s.parentSession && s.name === name);
    const candidates = watch.sessions.filter((s) => s.parentSession === rootSession || s === rootSession);
    for (const s of candidates.reverse()) {
      try {
        const r = (await Promise.race([
          s.customRequest('evaluate', { expression: '6*7', context: 'repl' }),
          new Promise((_, reject) => setTimeout(() => reject(new Error('no answer')), 3000)),
        ])) as { result: string };
        return r.result;
      } catch (err) {
        last = `${s.name}: ${(err as Error).message}`;
      }
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`'${name}' could not evaluate: ${last}`);
}

async function stopAllSessions(api: AmqpTunnelApi): Promise<void> {
  await vscode.debug.stopDebugging();
  const deadline = Date.now() + 15_000;
  while (vscode.debug.activeDebugSession && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  // The provider stops the forwards it started once the sessions end.
  while (api.manager.list().some((e) => e.spec.kind === 'forward' && e.running) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
}

describe('Published on <broker>: find and attach (discovery in the Tunnels view)', function () {
  this.timeout(120_000);
  let api: AmqpTunnelApi;
  const stops: Array<() => unknown> = [];
  const reports: PublishedReport[] = [];

  useTestBroker(BROKER);

  before(async () => {
    api = await extensionApi();
    const sub = api.published.onDidReport((r) => reports.push(r));
    stops.push(() => sub.dispose());
    await vscode.commands.executeCommand(SHOW_VIEW_COMMAND);
    const deadline = Date.now() + 15_000;
    while (!api.published.section.isVisible && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(api.published.section.isVisible, 'the Tunnels view is visible');
  });

  after(async () => {
    await stopAllSessions(api).catch(() => undefined);
    for (const s of stops.reverse()) await s();
    for (const e of api.manager.list()) if (e.spec.broker === BROKER) await api.manager.remove(e);
  });

  it('a node --inspect program published by the CLI appears with its detected protocol; one click attaches (6*7 = 42); killed, it disappears', async () => {
    const queue = uniqueQueue('pub-node');
    const remote = await remoteNode(queue);
    stops.push(remote.stop);
    const ms = await untilListed(api, `${queue} listed`, () => !!entryFor(api, queue), 10_000);
    const node = entryFor(api, queue)!;
    const item = api.tree.getTreeItem(node);
    assert.match(String(item.description), /^node · /, String(item.description));
    assert.equal((item.iconPath as vscode.ThemeIcon).id, 'symbol-event');
    assert.match((item.tooltip as vscode.MarkdownString).value, /node\.js\/v\d+/);
    assert.equal(item.contextValue, 'publishedEntry;protocol=node');
    console.log(`      (listed ${ms} ms after the publisher was ready)`);

    const watch = watchSessions();
    stops.push(() => watch.dispose());
    // What the inline action passes: the clicked entry and the view's selection.
    assert.deepEqual(await run(COMMANDS.attachPublished, node, [node]), [true]);
    assert.equal(await evaluateIn(watch, `Attach to ${queue} over AMQP`), '42');
    const root = watch.sessions.find((s) => !s.parentSession && s.name === `Attach to ${queue} over AMQP`)!;
    assert.match(root.type, /^(pwa-)?node$/, 'the detected protocol chose js-debug, no type was asked');
    assert.ok(api.manager.list().some((e) => e.spec.kind === 'forward' && e.spec.queue === queue && e.running), 'a forward carries the session');
    await stopAllSessions(api);

    remote.publisher.kill('SIGKILL');
    const gone = await untilListed(api, `${queue} gone after kill -9`, () => !entryFor(api, queue), 8000);
    console.log(`      (the killed publisher left the view ${gone} ms after kill -9)`);
  });

  it('attaches to two selected published programs at once, one session each', async () => {
    const q1 = uniqueQueue('pub-multi-a');
    const q2 = uniqueQueue('pub-multi-b');
    const [a, b] = await Promise.all([remoteNode(q1), remoteNode(q2)]);
    stops.push(a.stop, b.stop);
    await untilListed(api, 'both listed', () => !!entryFor(api, q1) && !!entryFor(api, q2));
    const n1 = entryFor(api, q1)!;
    const n2 = entryFor(api, q2)!;
    const watch = watchSessions();
    stops.push(() => watch.dispose());
    assert.deepEqual(await run(COMMANDS.attachPublished, n1, [n1, n2]), [true, true]);
    assert.equal(await evaluateIn(watch, `Attach to ${q1} over AMQP`), '42');
    assert.equal(await evaluateIn(watch, `Attach to ${q2} over AMQP`), '42');
    assert.equal(watch.sessions.filter((s) => !s.parentSession).length, 2, 'one root session per entry');
    await stopAllSessions(api);
  });

  it('debugpy and a JVM are listed as python and java by their command lines, with no connection reaching them; a missing debugger extension is named', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'published-'));
    stops.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    // debugpy, waiting for its one client
    const pyPort = 20000 + Math.floor(Math.random() * 20000);
    const logs = path.join(dir, 'logs');
    fs.mkdirSync(logs);
    const py = spawnChild(PYTHON, ['-Xfrozen_modules=off', '-m', 'debugpy', '--listen', `127.0.0.1:${pyPort}`, '--wait-for-client', '--log-to', logs, '-c', "print('user code ran')"]);
    stops.push(() => py.kill('SIGKILL'));
    const adapterLog = (): string =>
      fs
        .readdirSync(logs)
        .filter((f) => f.startsWith('debugpy.adapter'))
        .map((f) => fs.readFileSync(path.join(logs, f), 'utf8'))
        .join('\n');
    const deadline = Date.now() + 30_000;
    while (!/Listening for incoming Client connections/.test(adapterLog())) {
      assert.ok(Date.now() < deadline && py.proc.exitCode === null, `debugpy did not listen: ${py.output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    // a JVM with a JDWP agent
    fs.writeFileSync(path.join(dir, 'Sleep.java'), 'public class Sleep { public static void main(String[] a) throws Exception { Thread.sleep(600000); } }\n');
    const jvm = new Child(spawn('java', ['-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=127.0.0.1:0', path.join(dir, 'Sleep.java')], { stdio: ['ignore', 'pipe', 'pipe'] }));
    stops.push(() => jvm.kill('SIGKILL'));
    const jPort = (await jvm.waitFor(/Listening for transport dt_socket at address: (\d+)/, 'the JDWP port'))[1]!;

    const pyQ = uniqueQueue('pub-python');
    const jQ = uniqueQueue('pub-java');
    const [pyPub, jPub] = await Promise.all([publishCli(pyPort, pyQ), publishCli(jPort, jQ)]);
    stops.push(() => pyPub.kill(), () => jPub.kill());
    await untilListed(api, 'python and java listed', () => !!entryFor(api, pyQ) && !!entryFor(api, jQ));
    assert.match(String(api.tree.getTreeItem(entryFor(api, pyQ)!).description), /^python · /);
    assert.match(String(api.tree.getTreeItem(entryFor(api, jQ)!).description), /^java · /);
    await api.published.section.refresh(BROKER);
    assert.doesNotMatch(adapterLog(), /Accepted incoming Client connection/, "debugpy's own log: no client");
    assert.doesNotMatch(py.output, /user code ran/, 'debugpy still waits for its client');
    assert.doesNotMatch(jvm.output, /handshake|failed to attach/i, "the JVM's own output: no connection");

    // The Python and Java debugger extensions are not installed here: attach names them and attaches nothing.
    reports.length = 0;
    const n = entryFor(api, pyQ)!;
    assert.deepEqual(await run(COMMANDS.attachPublished, n, [n]), [false]);
    assert.equal(reports.length, 1, JSON.stringify(reports));
    assert.match(reports[0]!.message, /Python Debugger extension \(ms-python\.debugpy\), which is not installed/);
    assert.deepEqual(reports[0]!.actions, ['Open in Extensions View']);
  });

  it('Copy launch.json Configuration writes the amqpTunnel attach configuration of the entry', async () => {
    const queue = uniqueQueue('pub-copy');
    const remote = await remoteNode(queue);
    stops.push(remote.stop);
    await untilListed(api, `${queue} listed`, () => !!entryFor(api, queue));
    const text = await run<string>(COMMANDS.copyLaunchConfiguration, entryFor(api, queue)!);
    assert.equal(await vscode.env.clipboard.readText(), text);
    assert.deepEqual(JSON.parse(text), { type: 'node', request: 'attach', name: `Attach to ${queue} over AMQP`, amqpTunnel: { queue, broker: BROKER } });
  });

  it('Forward port over AMQP offers the discovered queues first', async () => {
    // Named to sort first among whatever else the shared broker lists.
    const queue = `0-${uniqueQueue('pub-forward')}`;
    const remote = await remoteNode(queue);
    stops.push(remote.stop);
    await untilListed(api, `${queue} listed`, () => !!entryFor(api, queue));
    // Enter on the first item of the queue pick, then on the suggested free port.
    const summary = await answerQuickPick(run<TunnelSummary | undefined>(COMMANDS.forward, { broker: BROKER }), 'accept', 30_000);
    assert.equal(summary?.queue, queue);
    assert.equal(summary?.state, 'ready');
    const entry = api.manager.get(summary.id)!;
    stops.push(() => api.manager.remove(entry));
  });

  it('a publish from this window with amqpTunnel.unlisted is not listed', async () => {
    const config = vscode.workspace.getConfiguration(CONFIG_SECTION);
    await config.update(SETTINGS.unlisted, true, vscode.ConfigurationTarget.Global);
    stops.push(() => config.update(SETTINGS.unlisted, undefined, vscode.ConfigurationTarget.Global));
    const hidden = uniqueQueue('pub-unlisted');
    const shown = uniqueQueue('pub-listed');
    const remote = await remoteNode(shown);
    stops.push(remote.stop);
    const port = (await remote.debuggee.waitFor(/127\.0\.0\.1:(\d+)\//, 'port'))[1]!;
    const s = await run<TunnelSummary>(COMMANDS.publish, { broker: BROKER, target: port, queue: hidden });
    assert.equal(s.state, 'ready');
    stops.push(() => api.manager.remove(api.manager.get(s.id)!));
    await untilListed(api, `${shown} listed`, () => !!entryFor(api, shown));
    await api.published.section.refresh(BROKER);
    assert.equal(entryFor(api, hidden), undefined, 'the unlisted publish is not shown');
  });
});
