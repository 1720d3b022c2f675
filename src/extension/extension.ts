/**
 * Activation: build the services, register the commands, the tree and the
 * status bar, and start kept tunnels (trusted workspaces only). Everything
 * goes into `context.subscriptions`. The returned API is for tests.
 */
import * as vscode from 'vscode';
import { Brokers } from './brokers';
import { registerCommands, reportError } from './commands';
import type { Services } from './services';
import { COMMANDS, CONFIG_SECTION, CONTEXT, SETTINGS, VIEWS } from './ids';
import { TunnelSecrets, confirmAllInterfaces, setTunnelSecretCommand } from './tunnelSecrets';
import { registerDebugSupport, type DebugSupport } from './debug';
import { KeptTunnels } from './kept';
import { TunnelLog } from './log';
import { TunnelManager } from './manager';
import { plural } from './model';
import { PublisherWatch } from './presence';
import { TunnelStatusBar } from './statusBar';
import { TunnelTree } from './tree';
import { PublishedSection } from './discoveryTree';
import { registerPublished, type PublishedSupport } from './discoveryAttach';

export interface AmqpTunnelApi extends Services {
  statusBar: TunnelStatusBar;
  /** Resolves once kept tunnels were started (or skipped in an untrusted workspace). */
  restored: Promise<void>;
  /** Debugging through tunnels (src/extension/debug). */
  debug: DebugSupport;
  /** Publisher presence of ready forwards, checked while the view is visible. */
  presence: PublisherWatch;
  /** The "Published on <broker>" sections and one-click attach. */
  published: PublishedSupport;
}

let services: AmqpTunnelApi | undefined;

export function activate(context: vscode.ExtensionContext): AmqpTunnelApi {
  const brokers = new Brokers(context.secrets);
  const log = new TunnelLog(() => brokers.knownSecrets);
  const tunnelSecrets = new TunnelSecrets(context.secrets, brokers.knownSecrets);
  const manager = new TunnelManager(brokers, log, tunnelSecrets, confirmAllInterfaces);
  const kept = new KeptTunnels(() => brokers.list()[0]?.name);
  const tree = new TunnelTree(manager, (e) => kept.has(e.spec), brokers);
  const statusBar = new TunnelStatusBar(manager);
  const section = new PublishedSection(brokers, log);
  tree.addSection(section);
  const view = vscode.window.createTreeView(VIEWS.tunnels, { treeDataProvider: tree, showCollapseAll: false, canSelectMany: true });
  section.follow(view);
  const presence = new PublisherWatch(manager, brokers, view, section);
  const s: Services = { brokers, manager, kept, log, tree };
  context.subscriptions.push(log, manager, tree, statusBar, view, presence, section);
  registerCommands(context, s);
  const published = registerPublished(context, s, section);
  context.subscriptions.push(
    vscode.commands.registerCommand(COMMANDS.setTunnelSecret, (args?: { broker?: string; queue?: string; secret?: string }) =>
      setTunnelSecretCommand(tunnelSecrets, brokers, args ?? {}),
    ),
  );
  const debug = registerDebugSupport(context, s);
  let hasTunnels: boolean | undefined;
  context.subscriptions.push(
    manager.onDidChange(() => {
      const now = manager.list().length > 0;
      if (now !== hasTunnels) void vscode.commands.executeCommand('setContext', CONTEXT.hasTunnels, (hasTunnels = now));
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration(`${CONFIG_SECTION}.${SETTINGS.tunnels}`) || e.affectsConfiguration(`${CONFIG_SECTION}.${SETTINGS.brokers}`)) tree.refresh();
    }),
  );
  for (const p of brokers.problems()) log.warn(`settings: ${p}`);
  const restored = restoreKept(s, context);
  services = { ...s, statusBar, restored, debug, presence, published };
  return services;
}

export async function deactivate(): Promise<void> {
  await services?.manager.stopAll();
}

/**
 * Start the kept tunnels now if the workspace is trusted, else once it is.
 * (In an untrusted workspace VS Code hides the workspace's values of the
 * setting, so what to start is read only when the time comes.)
 */
function restoreKept(s: Services, context: vscode.ExtensionContext): Promise<void> {
  if (!vscode.workspace.isTrusted) {
    s.log.info('the workspace is not trusted: kept tunnels (amqpTunnel.tunnels) start once you trust it');
    return new Promise((resolve) => {
      context.subscriptions.push(
        vscode.workspace.onDidGrantWorkspaceTrust(() => void settingsSettled().then(() => startKept(s)).then(resolve)),
      );
    });
  }
  return startKept(s);
}

/**
 * Trust is granted before VS Code reveals the workspace's restricted
 * settings: wait for that change (or a second, when the workspace sets
 * none of ours).
 */
function settingsSettled(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      sub.dispose();
      resolve();
    };
    const timer = setTimeout(done, 1000);
    const sub = vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration(CONFIG_SECTION)) done();
    });
  });
}

async function startKept(s: Services): Promise<void> {
  const { specs, problems } = s.kept.read();
  for (const p of problems) s.log.warn(`settings: amqpTunnel.tunnels: ${p}`);
  if (specs.length === 0) return;
  s.log.info(`starting ${plural(specs.length, 'kept tunnel')}`);
  const failures: Array<{ spec: (typeof specs)[number]; err: unknown }> = [];
  await Promise.all(
    specs.map((spec) =>
      s.manager.start(spec).catch((err: unknown) => {
        failures.push({ spec, err });
      }),
    ),
  );
  if (failures.length === 1) {
    reportError(s, failures[0].err, failures[0].spec, () => void s.manager.start(failures[0].spec).catch((e: unknown) => reportError(s, e, failures[0].spec)));
  } else if (failures.length > 1) {
    for (const f of failures) s.log.error(`${f.spec.kind} ${f.spec.queue}: ${(f.err as Error).message}`);
    void vscode.window.showErrorMessage(`${failures.length} kept tunnels could not start; the log says why.`, 'Show Log').then((c) => {
      if (c) s.log.show();
    });
  }
}
