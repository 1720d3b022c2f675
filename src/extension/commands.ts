/**
 * The commands. Each prompts for what it needs (validating as the user
 * types) unless the caller passes it as an argument, so keybindings, tasks
 * and tests can run them without prompts:
 *
 *     amqpTunnel.forward  { broker?, queue?, bind? }
 *     amqpTunnel.publish  { broker?, target?, queue? }
 *     amqpTunnel.addBroker { name?, url?, password? }
 *     amqpTunnel.setBrokerPassword { name?, password? }
 *     amqpTunnel.removeBroker { name? }
 *     stop / restart / remove / copy / open / keep / forget: a tree item, { id }, or nothing (pick one)
 *
 * forward and publish resolve to a TunnelSummary, or undefined when the user
 * cancelled or the tunnel failed (the failure is shown as one notification).
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as vscode from 'vscode';
import type { Brokers } from './brokers';
import { COMMANDS } from './ids';
import type { KeptTunnels } from './kept';
import type { TunnelLog } from './log';
import type { TunnelEntry, TunnelManager } from './manager';
import {
  DEFAULT_BROKER_URL,
  bindInputProblem,
  brokerNameProblem,
  brokerUrlProblem,
  defaultPublishQueue,
  queueInputProblem,
  scrub,
  targetInputProblem,
  type TunnelSpec,
} from './model';
import type { Node, TunnelTree } from './tree';
import { formatHostPort, freePort, parseBind, parseTarget } from '../tunnel/spec';
import { confirmAllInterfaces } from './tunnelSecrets';

export interface TunnelSummary {
  id: string;
  kind: 'forward' | 'publish';
  broker: string;
  queue: string;
  /** forward: the local address to connect to; publish: the local service. */
  address: string;
  state: string;
}

export interface Services {
  brokers: Brokers;
  manager: TunnelManager;
  kept: KeptTunnels;
  log: TunnelLog;
  tree: TunnelTree;
}

type TunnelRef = Node | { id: string } | undefined;

export function registerCommands(context: vscode.ExtensionContext, s: Services): void {
  const reg = (id: string, fn: (...args: never[]) => unknown): void => {
    context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  };
  reg(COMMANDS.forward, (args?: { broker?: string; queue?: string; bind?: string }) => forwardCommand(s, args ?? {}));
  reg(COMMANDS.publish, (args?: { broker?: string; target?: string; queue?: string }) => publishCommand(s, args ?? {}));
  reg(COMMANDS.stop, (ref?: TunnelRef) => withTunnel(s, ref, 'Stop which tunnel?', (e) => s.manager.stop(e)));
  reg(COMMANDS.restart, (ref?: TunnelRef) => withTunnel(s, ref, 'Restart which tunnel?', (e) => startWithProgress(s, e.spec, () => s.manager.restart(e))));
  reg(COMMANDS.remove, (ref?: TunnelRef) => withTunnel(s, ref, 'Remove which tunnel?', (e) => s.manager.remove(e)));
  reg(COMMANDS.copyAddress, (ref?: TunnelRef) =>
    withTunnel(s, ref, 'Copy the address of which tunnel?', async (e) => {
      await vscode.env.clipboard.writeText(e.localAddress);
      vscode.window.setStatusBarMessage(`Copied ${e.localAddress}`, 3000);
      return e.localAddress;
    }),
  );
  reg(COMMANDS.openInBrowser, (ref?: TunnelRef) =>
    withTunnel(s, ref, 'Open which tunnel in the browser?', async (e) => {
      const a = parseBind(e.localAddress);
      const host = a.host === '0.0.0.0' || a.host === '::' ? '127.0.0.1' : a.host;
      const uri = await vscode.env.asExternalUri(vscode.Uri.parse(`http://${formatHostPort({ host, port: a.port })}/`));
      await vscode.env.openExternal(uri);
      return uri.toString();
    }),
  );
  reg(COMMANDS.keep, (ref?: TunnelRef) =>
    withTunnel(s, ref, 'Keep which tunnel (start it with the workspace)?', async (e) => {
      const where = await s.kept.keep(e.spec);
      s.tree.refresh(e);
      vscode.window.setStatusBarMessage(`The tunnel will start with the ${where === 'workspace' ? 'workspace' : 'window'} (saved in ${where} settings)`, 4000);
    }),
  );
  reg(COMMANDS.forget, (ref?: TunnelRef) =>
    withTunnel(s, ref, 'Stop keeping which tunnel?', async (e) => {
      await s.kept.forget(e.spec);
      s.tree.refresh(e);
    }),
  );
  reg(COMMANDS.showLog, () => s.log.show());
  reg(COMMANDS.addBroker, (args?: { name?: string; url?: string; password?: string }) => addBrokerCommand(s, args ?? {}));
  reg(COMMANDS.setBrokerPassword, (args?: { name?: string; password?: string } | Node) => setPasswordCommand(s, brokerArgs(args)));
  reg(COMMANDS.removeBroker, (args?: { name?: string } | Node) => removeBrokerCommand(s, brokerArgs(args)));
}

function brokerArgs<T extends { name?: string }>(args: T | Node | undefined): T {
  if (args && 'type' in args) return { name: args.type === 'broker' ? args.name : args.entry.spec.broker } as T;
  return (args ?? {}) as T;
}

// ---- forward / publish -------------------------------------------------------

async function forwardCommand(s: Services, args: { broker?: string; queue?: string; bind?: string }): Promise<TunnelSummary | undefined> {
  const title = 'Forward port over AMQP';
  const broker = args.broker ?? (await pickBroker(s, title));
  if (!broker) return undefined;
  const queue =
    args.queue ??
    (await pickQueue(s, title, 'The queue a publisher listens on (see "Publish port over AMQP" or `amqp-tunnel publish`)'));
  if (queue === undefined) return undefined;
  const bind =
    args.bind ??
    (await vscode.window.showInputBox({
      title,
      prompt: 'Local port to listen on, or address:port (127.0.0.1 unless you give an address; 0 picks a free port)',
      value: String(await freePort().catch(() => 0)),
      validateInput: bindInputProblem,
      ignoreFocusOut: true,
    }));
  if (bind === undefined) return undefined;
  const problem = queueInputProblem(queue) ?? bindInputProblem(bind);
  if (problem) return void vscode.window.showErrorMessage(problem);
  if (!(await confirmAllInterfaces(parseBind(bind)))) return undefined;
  return startTunnel(s, { kind: 'forward', broker, queue, address: formatHostPort(parseBind(bind)) });
}

async function publishCommand(s: Services, args: { broker?: string; target?: string; queue?: string }): Promise<TunnelSummary | undefined> {
  const title = 'Publish port over AMQP';
  const broker = args.broker ?? (await pickBroker(s, title));
  if (!broker) return undefined;
  const target =
    args.target ??
    (await vscode.window.showInputBox({
      title,
      prompt: 'The local port to publish, or host:port (127.0.0.1 unless you give a host), for example 9229',
      placeHolder: '9229',
      validateInput: targetInputProblem,
      ignoreFocusOut: true,
    }));
  if (target === undefined) return undefined;
  const targetProblem = targetInputProblem(target);
  if (targetProblem) return void vscode.window.showErrorMessage(targetProblem);
  const queue =
    args.queue ??
    (await vscode.window.showInputBox({
      title,
      prompt: 'The queue to publish on: whoever forwards this queue reaches the port',
      value: defaultPublishQueue(os.hostname(), target, randomBytes(3).toString('hex')),
      validateInput: queueInputProblem,
      ignoreFocusOut: true,
    }));
  if (queue === undefined) return undefined;
  const problem = queueInputProblem(queue);
  if (problem) return void vscode.window.showErrorMessage(problem);
  return startTunnel(s, { kind: 'publish', broker, queue, address: formatHostPort(parseTarget(target)) });
}

async function startTunnel(s: Services, spec: TunnelSpec): Promise<TunnelSummary | undefined> {
  let entry: TunnelEntry | undefined;
  const ok = await startWithProgress(s, spec, async () => {
    entry = await s.manager.start(spec);
  });
  if (!ok || !entry) return undefined;
  return summary(entry);
}

/** Run a start or restart with a progress notification; a failure becomes one error notification. */
async function startWithProgress(s: Services, spec: TunnelSpec, run: () => Promise<void>): Promise<boolean> {
  try {
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `AMQP Tunnel: connecting to broker '${spec.broker}' for ${spec.kind} ${spec.queue}…` },
      run,
    );
    return true;
  } catch (err) {
    reportError(s, err, spec, () => void startTunnel(s, spec));
    return false;
  }
}

export function summary(e: TunnelEntry): TunnelSummary {
  return { id: e.id, kind: e.spec.kind, broker: e.spec.broker, queue: e.spec.queue, address: e.localAddress, state: e.state };
}

/**
 * One notification per failure: the cause in words and the actions that can
 * fix it. Never a stack trace; never a secret.
 */
export function reportError(s: Services, err: unknown, spec: TunnelSpec | undefined, retry?: () => void): void {
  const code = (err as { code?: string })?.code;
  const text = scrub(err instanceof Error ? err.message : String(err), s.brokers.knownSecrets);
  const what = spec ? `${spec.kind} ${spec.queue}` : 'AMQP Tunnel';
  s.log.error(`${what}: ${text}`);
  const actions: string[] = [];
  if (code === 'ERR_AMQP_AUTH' && spec) actions.push('Set Broker Password');
  if (retry) actions.push('Retry');
  actions.push('Show Log');
  void vscode.window.showErrorMessage(`Could not start ${what}: ${text}`, ...actions).then((choice) => {
    if (choice === 'Set Broker Password' && spec) void vscode.commands.executeCommand(COMMANDS.setBrokerPassword, { name: spec.broker });
    else if (choice === 'Retry') retry?.();
    else if (choice === 'Show Log') s.log.show();
  });
}

// ---- prompts -------------------------------------------------------------------

/** The broker to use: the only one, a picked one, or (with none configured) a new one. */
async function pickBroker(s: Services, title: string): Promise<string | undefined> {
  const brokers = s.brokers.list();
  if (brokers.length === 0) {
    const added = await addBrokerCommand(s, {}, `${title}: no broker is configured yet; add one`);
    return added;
  }
  if (brokers.length === 1) return brokers[0].name;
  const pick = await vscode.window.showQuickPick(
    brokers.map((b) => ({ label: b.name, description: b.url })),
    { title, placeHolder: 'Which broker?', ignoreFocusOut: true },
  );
  return pick?.label;
}

/** Type a queue name, or pick one of the queues of listed and kept tunnels. */
async function pickQueue(s: Services, title: string, prompt: string): Promise<string | undefined> {
  const known = [...new Set([...s.manager.list().map((e) => e.spec.queue), ...s.kept.read().specs.map((k) => k.queue)])];
  return new Promise<string | undefined>((resolve) => {
    const qp = vscode.window.createQuickPick();
    qp.title = title;
    qp.placeholder = 'Type a queue name';
    qp.ignoreFocusOut = true;
    const knownItems = known.map((q) => ({ label: q, description: 'used before' }));
    const update = (): void => {
      const v = qp.value;
      const problem = v ? queueInputProblem(v) : undefined;
      const typed = v && !known.includes(v) ? [{ label: v, description: problem ? `✕ ${problem}` : 'new queue name', detail: problem ? undefined : prompt }] : [];
      qp.items = [...typed, ...knownItems];
    };
    update();
    qp.onDidChangeValue(update);
    qp.onDidAccept(() => {
      const label = qp.selectedItems[0]?.label ?? qp.value;
      const problem = queueInputProblem(label);
      if (problem) {
        // The input stays open; the item already says what is wrong.
        return;
      }
      resolve(label);
      qp.hide();
    });
    qp.onDidHide(() => {
      resolve(undefined);
      qp.dispose();
    });
    qp.show();
  });
}

async function addBrokerCommand(s: Services, args: { name?: string; url?: string; password?: string }, title = 'Add Broker'): Promise<string | undefined> {
  const existing = s.brokers.list().map((b) => b.name);
  const url =
    args.url ??
    (await vscode.window.showInputBox({
      title,
      prompt: 'Broker URL: amqp[s]://user@host[:port][/vhost] (the password is asked next and kept in the secret store)',
      value: DEFAULT_BROKER_URL,
      validateInput: brokerUrlProblem,
      ignoreFocusOut: true,
    }));
  if (url === undefined) return undefined;
  const urlProblem = brokerUrlProblem(url);
  if (urlProblem) return void vscode.window.showErrorMessage(urlProblem);
  const name =
    args.name ??
    (await vscode.window.showInputBox({
      title,
      prompt: 'A name for this broker, shown in the Tunnels view',
      value: existing.length === 0 ? 'local' : '',
      validateInput: (v) => brokerNameProblem(v, existing),
      ignoreFocusOut: true,
    }));
  if (name === undefined) return undefined;
  const nameProblem = args.name === undefined ? brokerNameProblem(name, existing) : name.trim() ? undefined : 'the broker name is empty';
  if (nameProblem) return void vscode.window.showErrorMessage(nameProblem);
  const hasPasswordInUrl = (() => {
    try {
      return new URL(url.trim()).password !== '';
    } catch {
      return false;
    }
  })();
  const password =
    args.password ??
    (hasPasswordInUrl || args.url !== undefined
      ? undefined
      : await vscode.window.showInputBox({
          title,
          prompt: `Password for '${name.trim()}' (kept in VS Code's secret store; leave empty for none)`,
          password: true,
          ignoreFocusOut: true,
        }));
  const entry = await s.brokers.add(name, url, password);
  s.log.info(`added broker '${entry.name}' (${entry.url})`);
  return entry.name;
}

async function setPasswordCommand(s: Services, args: { name?: string; password?: string }): Promise<void> {
  const name = args.name ?? (await pickExistingBroker(s, 'Set Broker Password'));
  if (!name) return;
  if (!s.brokers.get(name)) return void vscode.window.showErrorMessage(`No broker named '${name}' is configured.`);
  const password =
    args.password ??
    (await vscode.window.showInputBox({
      title: 'Set Broker Password',
      prompt: `Password for '${name}' (kept in VS Code's secret store; leave empty to remove it)`,
      password: true,
      ignoreFocusOut: true,
    }));
  if (password === undefined) return;
  await s.brokers.setPassword(name, password);
  s.log.info(`${password ? 'stored' : 'removed'} the password of broker '${name}'`);
}

async function removeBrokerCommand(s: Services, args: { name?: string }): Promise<void> {
  const name = args.name ?? (await pickExistingBroker(s, 'Remove Broker'));
  if (!name) return;
  await s.brokers.remove(name);
  s.log.info(`removed broker '${name}' and its password`);
}

async function pickExistingBroker(s: Services, title: string): Promise<string | undefined> {
  const brokers = s.brokers.list();
  if (brokers.length === 0) {
    void vscode.window.showInformationMessage('No broker is configured yet.', 'Add Broker').then((c) => {
      if (c) void vscode.commands.executeCommand(COMMANDS.addBroker);
    });
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(
    brokers.map((b) => ({ label: b.name, description: b.url })),
    { title, placeHolder: 'Which broker?' },
  );
  return pick?.label;
}

/** Resolve a tree item, `{ id }` or nothing (pick from a list) to a tunnel, then run `fn`. */
async function withTunnel<T>(s: Services, ref: TunnelRef, placeHolder: string, fn: (e: TunnelEntry) => Promise<T>): Promise<T | undefined> {
  let entry: TunnelEntry | undefined;
  if (ref && 'type' in ref) entry = ref.type === 'tunnel' ? ref.entry : undefined;
  else if (ref && 'id' in ref) entry = s.manager.get(ref.id);
  else {
    const all = s.manager.list();
    if (all.length === 0) {
      void vscode.window.showInformationMessage('There are no tunnels.', 'Forward port over AMQP').then((c) => {
        if (c) void vscode.commands.executeCommand(COMMANDS.forward);
      });
      return undefined;
    }
    const pick =
      all.length === 1
        ? { entry: all[0] }
        : await vscode.window.showQuickPick(
            all.map((e) => ({ label: `${e.spec.kind} ${e.spec.queue}`, description: `${e.localAddress} · ${e.state} · ${e.spec.broker}`, entry: e })),
            { placeHolder },
          );
    entry = pick?.entry;
  }
  if (!entry) return undefined;
  return fn(entry);
}

