/**
 * Debugging through tunnels: the `amqp-tunnel` task type, the debug
 * configuration provider for the `amqpTunnel` property, the
 * `${command:amqpTunnel.localPort}` variable and "Attach Debugger".
 * One call from activate(); everything goes into `context.subscriptions`.
 */
import * as vscode from 'vscode';
import type { Services } from '../services';
import { COMMANDS, TASK_TYPE } from '../ids';
import type { Node } from '../tree';
import { attachDebuggerCommand } from './attach';
import { registerConfigurationProviders } from './configurations';
import { TunnelDebugProvider } from './provider';
import { TunnelTasks } from './task';
import { localPortCommand } from './variable';
import { SessionTunnelWatch } from './watch';

export interface DebugFailure {
  /** The debug configuration (or command) that could not start. */
  configuration: string;
  /** The message shown to the user. */
  message: string;
  /** The notification's buttons besides "Show Log". */
  actions?: string[];
}

export interface DebugSupport {
  tasks: TunnelTasks;
  provider: TunnelDebugProvider;
  /** Fires with each failure shown to the user (the notification's text), for tests. */
  onDidReportFailure: vscode.Event<DebugFailure>;
  /** Fires with each warning about a live session's tunnel (the notification's text), for tests. */
  onDidWarn: vscode.Event<DebugFailure>;
}

export function registerDebugSupport(context: vscode.ExtensionContext, s: Services): DebugSupport {
  const failures = new vscode.EventEmitter<DebugFailure>();
  const report = (configuration: string, message: string, ...actions: Array<{ title: string; run: () => void }>): void => {
    const text = `Cannot start '${configuration}': ${message}`;
    failures.fire({ configuration, message: text, actions: actions.map((a) => a.title) });
    void vscode.window.showErrorMessage(text, ...actions.map((a) => a.title), 'Show Log').then((c) => {
      if (c === 'Show Log') s.log.show();
      else actions.find((a) => a.title === c)?.run();
    });
  };
  const warnings = new vscode.EventEmitter<DebugFailure>();
  const warn = (configuration: string, message: string): void => {
    const text = `Debug session '${configuration}': ${message}`;
    s.log.warn(text);
    warnings.fire({ configuration, message: text });
    void vscode.window.showWarningMessage(text, 'Show Log').then((c) => {
      if (c) s.log.show();
    });
  };
  const tasks = new TunnelTasks(s);
  const provider = new TunnelDebugProvider(s, tasks, report);
  context.subscriptions.push(
    failures,
    warnings,
    provider,
    new SessionTunnelWatch(s, warn),
    vscode.tasks.registerTaskProvider(TASK_TYPE, tasks),
    vscode.debug.registerDebugConfigurationProvider('*', provider),
    registerConfigurationProviders(s),
    vscode.commands.registerCommand(COMMANDS.localPort, (args?: unknown) => localPortCommand(s, args, report)),
    vscode.commands.registerCommand(COMMANDS.attachDebugger, (ref?: Node | { id: string; type?: string }) => attachDebuggerCommand(s, ref, report)),
  );
  return { tasks, provider, onDidReportFailure: failures.event, onDidWarn: warnings.event };
}
