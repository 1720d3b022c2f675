/**
 * `${command:amqpTunnel.localPort}`: the local port of a ready forward, for
 * any field of a launch configuration. With one ready forward it answers at
 * once, with several it asks which, with none it offers to start one (the
 * "Forward port over AMQP" prompts). Cancelling cancels the launch.
 *
 * Through an `inputs` entry it takes arguments and never prompts:
 *
 *     "inputs": [{ "id": "appPort", "type": "command", "command": "amqpTunnel.localPort",
 *                  "args": { "queue": "my-app-debug", "broker": "staging" } }]
 *
 * VS Code substitutes command variables as strings; the debug configuration
 * provider turns a port field of digits back into a number.
 */
import * as vscode from 'vscode';
import type { Services, TunnelSummary } from '../services';
import { COMMANDS } from '../ids';
import type { TunnelEntry } from '../manager';
import { parseBind } from '../../tunnel/spec';
import { pickTunnel } from '../prompts';
import { ensureForward } from './forwards';

export async function localPortCommand(s: Services, args: unknown, report: (configName: string, message: string) => void): Promise<string | undefined> {
  const a = args && typeof args === 'object' ? (args as Record<string, unknown>) : {};
  // Called for a launch configuration, VS Code passes the configuration itself: its name is for messages only.
  const isConfig = typeof a.request === 'string' && typeof a.type === 'string';
  if (!isConfig && typeof a.queue === 'string') {
    try {
      const r = await ensureForward(s, { queue: a.queue, broker: typeof a.broker === 'string' ? a.broker : undefined });
      return String(r.port);
    } catch (err) {
      report(`${COMMANDS.localPort} (queue '${a.queue}')`, (err as Error).message);
      return undefined;
    }
  }
  const ready = s.manager.list().filter((e) => e.spec.kind === 'forward' && e.state === 'ready');
  let entry: TunnelEntry | undefined;
  if (ready.length > 0) {
    entry = await pickTunnel(ready, 'Attach through which forward?', isConfig ? `Debug '${String(a.name ?? a.type)}'` : 'AMQP Tunnel');
  } else {
    const choice = await vscode.window.showInformationMessage(
      'No forward over AMQP is ready. Start one to attach through?',
      { modal: false },
      'Forward port over AMQP',
    );
    if (choice) {
      const started = await vscode.commands.executeCommand<TunnelSummary | undefined>(COMMANDS.forward);
      if (started) return String(parseBind(started.address).port);
    }
  }
  return entry ? String(parseBind(entry.localAddress).port) : undefined;
}
