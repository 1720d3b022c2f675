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
import { COMMANDS } from './ids';
import type { TunnelEntry } from './manager';
import {
  DEFAULT_BROKER_URL,
  bindInputProblem,
  brokerNameProblem,
  brokerUrlProblem,
  defaultPublishQueue,
  plural,
  queueInputProblem,
  scrub,
  targetInputProblem,
  type TunnelSpec,
} from './model';
import type { Node } from './tree';
import { askChecked, pickBroker, pickTunnel } from './prompts';
import { summary, type Services, type TunnelSummary } from './services';
import { discoveredQueueItems } from './discoveryAttach';
import { formatHostPort, freePort, parseBind, parseTarget } from '../tunnel/spec';

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
    withTunnel(s, ref, 'Copy the address of which running tunnel?', async (e) => {
      await vscode.env.clipboard.writeText(e.localAddress);
      vscode.window.setStatusBarMessage(`Copied ${e.localAddress}`, 3000);
      return e.localAddress;
    }, { runningOnly: true }),
  );
  reg(COMMANDS.openInBrowser, (ref?: TunnelRef) =>
    withTunnel(s, ref, 'Open which running tunnel in the browser?', async (e) => {
      const a = parseBind(e.localAddress);
      const host = a.host === '0.0.0.0' || a.host === '::' ? '127.0.0.1' : a.host;
      const uri = await vscode.env.asExternalUri(vscode.Uri.parse(`http://${formatHostPort({ host, port: a.port })}/`));
      await vscode.env.openExternal(uri);
      return uri.toString();
    }, { runningOnly: true }),
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
  if (args && 'type' in args) {
    return { name: args.type === 'broker' ? args.name : args.type === 'tunnel' ? args.entry.spec.broker : (args as { broker?: string }).broker } as T;
  }
  return (args ?? {}) as T;
}

// ---- forward / publish -------------------------------------------------------

async function forwardCommand(s: Services, args: { broker?: string; queue?: string; bind?: string }): Promise<TunnelSummary | undefined> {
  const title = 'Forward port over AMQP';
  const broker = args.broker ?? (await pickBrokerOrAdd(s, title));
  if (!broker) return undefined;
  const queue = await askChecked(
    args.queue ?? (await pickQueue(s, title, 'The queue a publisher listens on (see "Publish port over AMQP" or `amqp-tunnel publish`)', discoveredQueueItems(broker))),
    queueInputProblem,
    { title },
  );
  if (queue === undefined) return undefined;
  if (args.bind !== undefined && bindInputProblem(args.bind)) return void vscode.window.showErrorMessage(bindInputProblem(args.bind)!);
  // A forward of this queue exists already: use it (restarted if it is stopped) instead of a silent duplicate.
  // Only an explicit port other than the existing forward's, or the user's choice, makes a second one.
  const existing = s.manager.forwardsOf(broker, queue)[0];
  if (existing && (args.bind === undefined || parseBind(args.bind).port === 0)) {
    const reuse = args.bind !== undefined || args.queue !== undefined ? true : await askReuse(title, existing);
    if (reuse === undefined) return undefined;
    if (reuse) return startTunnel(s, existing.spec);
  }
  const bind = await askChecked(args.bind, bindInputProblem, {
    title,
    prompt: 'Local port to listen on, or address:port (127.0.0.1 unless you give an address; 0 picks a free port)',
    value: String(await freePort().catch(() => 0)),
  });
  if (bind === undefined) return undefined;
  // Listening on every interface exposes the remote port to the network: TunnelManager asks first (tunnelSecrets.ts).
  return startTunnel(s, { kind: 'forward', broker, queue, address: formatHostPort(parseBind(bind)) });
}

async function publishCommand(s: Services, args: { broker?: string; target?: string; queue?: string }): Promise<TunnelSummary | undefined> {
  const title = 'Publish port over AMQP';
  const broker = args.broker ?? (await pickBrokerOrAdd(s, title));
  if (!broker) return undefined;
  const target = await askChecked(args.target, targetInputProblem, {
    title,
    prompt: 'The local port to publish, or host:port (127.0.0.1 unless you give a host), for example 9229',
    placeHolder: '9229',
  });
  if (target === undefined) return undefined;
  const queue = await askChecked(args.queue, queueInputProblem, {
    title,
    prompt: 'The queue to publish on: whoever forwards this queue reaches the port',
    value: defaultPublishQueue(os.hostname(), target, randomBytes(3).toString('hex')),
  });
  if (queue === undefined) return undefined;
  return startTunnel(s, { kind: 'publish', broker, queue, address: formatHostPort(parseTarget(target)) });
}

/** Use the existing forward of a queue (true), start another one (false), or cancel (undefined). */
async function askReuse(title: string, existing: TunnelEntry): Promise<boolean | undefined> {
  const use = {
    label: existing.running ? `Use the forward at ${existing.localAddress}` : `Restart the forward at ${existing.localAddress}`,
    description: existing.state,
    reuse: true,
  };
  const another = { label: `Start another forward of '${existing.spec.queue}'`, description: 'on a new local port', reuse: false };
  const pick = await vscode.window.showQuickPick([use, another], {
    title,
    placeHolder: `Queue '${existing.spec.queue}' is forwarded already (${existing.localAddress}, ${existing.state})`,
    ignoreFocusOut: true,
  });
  return pick?.reuse;
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
function pickBrokerOrAdd(s: Services, title: string): Promise<string | undefined> {
  return pickBroker(s.brokers.list(), title, () => addBrokerCommand(s, {}, `${title}: no broker is configured yet; add one`));
}

/** Type a queue name, or pick a discovered one (first, when `discovered` brings any) or one of the listed and kept tunnels. */
async function pickQueue(s: Services, title: string, prompt: string, discovered?: Promise<vscode.QuickPickItem[]>): Promise<string | undefined> {
  const known = [...new Set([...s.manager.list().map((e) => e.spec.queue), ...s.kept.read().specs.map((k) => k.queue)])];
  return new Promise<string | undefined>((resolve) => {
    const qp = vscode.window.createQuickPick();
    qp.title = title;
    qp.placeholder = 'Type a queue name';
    qp.ignoreFocusOut = true;
    let found: vscode.QuickPickItem[] = [];
    const update = (): void => {
      const v = qp.value;
      const problem = v ? queueInputProblem(v) : undefined;
      const offered = new Set(found.filter((i) => i.kind !== vscode.QuickPickItemKind.Separator).map((i) => i.label));
      const knownItems = known.filter((q) => !offered.has(q)).map((q) => ({ label: q, description: 'used before' }));
      const typed = v && !known.includes(v) && !offered.has(v) ? [{ label: v, description: problem ? `✕ ${problem}` : 'new queue name', detail: problem ? undefined : prompt }] : [];
      qp.items = [...typed, ...found, ...(found.length > 0 && knownItems.length > 0 ? [{ label: 'Used before', kind: vscode.QuickPickItemKind.Separator }] : []), ...knownItems];
    };
    if (discovered) {
      qp.busy = true;
      void discovered.then((items) => {
        found = items;
        qp.busy = false;
        update();
      });
    }
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
  let url = await askChecked(args.url, brokerUrlProblem, {
    title,
    prompt: 'Broker URL: amqp[s]://host[:port][/vhost] (the user name and password are asked next; the password is kept in the secret store)',
    value: DEFAULT_BROKER_URL,
  });
  if (url === undefined) return undefined;
  // The user name is asked for (defaulting to the URL's, else RabbitMQ's guest) instead of having to be typed into the URL.
  if (args.url === undefined && !urlHasPassword(url)) {
    const user = await askChecked(undefined, (v) => (v.trim() ? undefined : 'give a user name, such as guest'), {
      title,
      prompt: 'User name for the broker (RabbitMQ\'s default is guest)',
      value: urlUser(url) || 'guest',
    });
    if (user === undefined) return undefined;
    url = withUser(url, user.trim());
  }
  // A name given as an argument may replace a broker of that name; a typed one must be new.
  const name = await askChecked(args.name, (v) => (args.name === undefined ? brokerNameProblem(v, existing) : v.trim() ? undefined : 'the broker name is empty'), {
    title,
    prompt: 'A name for this broker, shown in the Tunnels view',
    value: existing.length === 0 ? 'local' : '',
  });
  if (name === undefined) return undefined;
  const password =
    args.password ??
    (urlHasPassword(url) || args.url !== undefined
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

/** Store a password; the broker's tunnels that failed on the login are restarted, and what happened is confirmed. */
async function setPasswordCommand(s: Services, args: { name?: string; password?: string }): Promise<{ restarted: TunnelSummary[] } | undefined> {
  const name = args.name ?? (await pickExistingBroker(s, 'Set Broker Password'));
  if (!name) return undefined;
  if (!s.brokers.get(name)) return void vscode.window.showErrorMessage(`No broker named '${name}' is configured.`);
  const password =
    args.password ??
    (await vscode.window.showInputBox({
      title: 'Set Broker Password',
      prompt: `Password for '${name}' (kept in VS Code's secret store; leave empty to remove it)`,
      password: true,
      ignoreFocusOut: true,
    }));
  if (password === undefined) return undefined;
  await s.brokers.setPassword(name, password);
  s.log.info(`${password ? 'stored' : 'removed'} the password of broker '${name}'`);
  // The tunnels of this broker that failed on the login start again with the new password.
  const refused = s.manager.list().filter((e) => e.spec.broker === name && e.state === 'failed' && e.startErrorCode === 'ERR_AMQP_AUTH');
  const results = await Promise.all(
    refused.map((e) =>
      s.manager.restart(e).then(
        () => true,
        (err: unknown) => (s.log.error(`${e.spec.kind} ${e.spec.queue}: ${scrub((err as Error).message, s.brokers.knownSecrets)}`), false),
      ),
    ),
  );
  const ok = results.filter(Boolean).length;
  const what = `${password ? 'Saved' : 'Removed'} the password of broker '${name}'`;
  if (refused.length === 0) vscode.window.setStatusBarMessage(`${what}.`, 4000);
  else if (ok === refused.length) void vscode.window.showInformationMessage(`${what}; ${plural(ok, 'tunnel')} that failed on the login ${ok === 1 ? 'is' : 'are'} running again.`);
  else {
    void vscode.window.showErrorMessage(`${what}; ${plural(refused.length - ok, 'tunnel')} still cannot log in: the log says why.`, 'Show Log').then((c) => {
      if (c) s.log.show();
    });
  }
  return { restarted: refused.map(summary) };
}

function urlHasPassword(url: string): boolean {
  try {
    return new URL(url.trim()).password !== '';
  } catch {
    return false;
  }
}

function urlUser(url: string): string {
  try {
    return decodeURIComponent(new URL(url.trim()).username);
  } catch {
    return '';
  }
}

function withUser(url: string, user: string): string {
  const u = new URL(url.trim());
  u.username = encodeURIComponent(user);
  return u.toString().replace(/\/$/, '');
}

async function removeBrokerCommand(s: Services, args: { name?: string }): Promise<void> {
  const name = args.name ?? (await pickExistingBroker(s, 'Remove Broker'));
  if (!name) return;
  await s.brokers.remove(name);
  s.log.info(`removed broker '${name}' and its password`);
}

/** A configured broker, always asked for (these commands change it); with none, an offer to add one. */
function pickExistingBroker(s: Services, title: string): Promise<string | undefined> {
  return pickBroker(
    s.brokers.list(),
    title,
    async () => {
      void vscode.window.showInformationMessage('No broker is configured yet.', 'Add Broker').then((c) => {
        if (c) void vscode.commands.executeCommand(COMMANDS.addBroker);
      });
      return undefined;
    },
    true,
  );
}

/** Resolve a tree item, `{ id }` or nothing (pick from a list) to a tunnel, then run `fn`. */
async function withTunnel<T>(
  s: Services,
  ref: TunnelRef,
  placeHolder: string,
  fn: (e: TunnelEntry) => Promise<T>,
  options: { runningOnly?: boolean } = {},
): Promise<T | undefined> {
  let entry: TunnelEntry | undefined;
  if (ref && 'type' in ref) entry = ref.type === 'tunnel' ? ref.entry : undefined;
  else if (ref && 'id' in ref) entry = s.manager.get(ref.id);
  else {
    // Copy and Open offer only running tunnels: nobody listens on a stopped one's port.
    const all = s.manager.list().filter((e) => !options.runningOnly || e.running);
    if (all.length === 0) {
      void vscode.window.showInformationMessage('There are no tunnels.', 'Forward port over AMQP').then((c) => {
        if (c) void vscode.commands.executeCommand(COMMANDS.forward);
      });
      return undefined;
    }
    entry = await pickTunnel(all, placeHolder);
  }
  if (!entry) return undefined;
  return fn(entry);
}

