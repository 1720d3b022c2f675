/**
 * "Attach Debugger" on a forward in the Tunnels view: pick the kind of
 * process on the far side and start an attach session on the forward's
 * local address, with the debugger's own field names (fields.ts). The
 * forward keeps running when the session ends: the user started it.
 *
 *     amqpTunnel.attachDebugger  a tree item, { id, type? }, or nothing (pick a forward)
 */
import * as vscode from 'vscode';
import type { Services } from '../services';
import type { TunnelEntry } from '../manager';
import type { Node } from '../tree';
import { parseBind } from '../../tunnel/spec';
import { pickTunnel } from '../prompts';
import { applyLocalAddress } from './fields';
import { brokerFor, checkPublished } from './forwards';
import { debuggerOfType, debuggerRows, missingDebuggerMessage, type DebuggerNeed, type DebuggerRow } from '../discoveryModel';

/** This extension's id: its own `contributes.debuggers` entries only add the amqpTunnel property and snippets. */
const SELF_ID = 'amqp-tunnel.amqp-tunnel';

interface DebuggerContribution {
  type?: string;
  label?: string;
  program?: string;
  runtime?: string;
}

/**
 * Debug types that an installed extension can run. Entries that only add
 * attributes or snippets to a type (this extension's own `node`, `debugpy`
 * and `java` entries, which add the `amqpTunnel` property) do not make a
 * debugger: a real one has a label, and this extension has none.
 */
export function installedDebugTypes(): Set<string> {
  const types = new Set<string>();
  for (const ext of vscode.extensions.all) {
    if (ext.id.toLowerCase() === SELF_ID) continue;
    const debuggers = (ext.packageJSON as { contributes?: { debuggers?: DebuggerContribution[] } })?.contributes?.debuggers ?? [];
    for (const d of debuggers) if (d.type && (d.label || d.program || d.runtime)) types.add(d.type);
  }
  // js-debug registers 'pwa-node' and answers to 'node'.
  if (types.has('pwa-node')) types.add('node');
  return types;
}

export type DebuggerPickItem = vscode.QuickPickItem & DebuggerRow;

/** The "what runs on the remote side?" items (discoveryModel.ts: one table for both attach paths). */
export function debuggerPickItems(installed = installedDebugTypes()): DebuggerPickItem[] {
  return debuggerRows(installed);
}

export const SHOW_EXTENSION_ACTION = 'Show in Extensions';

export async function attachDebuggerCommand(
  s: Services,
  ref: Node | { id: string; type?: string } | undefined,
  report: (configName: string, message: string, ...actions: Array<{ title: string; run: () => void }>) => void,
): Promise<boolean> {
  let entry: TunnelEntry | undefined;
  let type: string | undefined;
  if (ref && 'entry' in ref) {
    entry = ref.entry;
  } else if (ref && 'id' in ref) {
    entry = s.manager.get(ref.id);
    type = ref.type;
  }
  if (!entry) {
    const ready = s.manager.list().filter((e) => e.spec.kind === 'forward' && e.running);
    if (ready.length === 0) {
      void vscode.window.showInformationMessage('There is no forward to attach through: forward the queue the remote process is published on first.');
      return false;
    }
    entry = await pickTunnel(ready, 'Attach through which forward?');
  }
  if (!entry) return false;
  if (entry.spec.kind !== 'forward') {
    void vscode.window.showErrorMessage('Attach Debugger works on a forward (the local end of a remote debug port), not on a publish.');
    return false;
  }
  const name = `Attach to ${entry.spec.queue} over AMQP`;
  // The same check as F5 (the amqpTunnel property): nothing published fails now, with the cause, instead of a debugger retrying for half a minute.
  try {
    const broker = brokerFor(s, entry.spec.broker);
    await checkPublished(s, entry.spec.queue, broker.name, broker.address);
  } catch (err) {
    s.log.error(`debug '${name}': ${(err as Error).message}`);
    report(name, (err as Error).message);
    return false;
  }
  const installed = installedDebugTypes();
  let choice: DebuggerNeed | undefined;
  if (!type) {
    const pick = await vscode.window.showQuickPick(debuggerPickItems(installed), {
      title: `Attach Debugger to ${entry.localAddress} (queue ${entry.spec.queue})`,
      placeHolder: 'What runs on the remote side?',
    });
    if (!pick) return false;
    choice = pick.need;
    type = pick.type;
  } else {
    choice = debuggerOfType(type);
    if (choice && !installed.has(type)) type = undefined;
  }
  if (!type) {
    const missing = choice!;
    s.log.error(`debug '${name}': ${missingDebuggerMessage(missing)}`);
    report(name, missingDebuggerMessage(missing), {
      title: SHOW_EXTENSION_ACTION,
      run: () => void vscode.commands.executeCommand('workbench.extensions.search', `@id:${missing.extensionId}`),
    });
    return false;
  }
  const { host, port } = parseBind(entry.localAddress);
  const config: vscode.DebugConfiguration = { type, request: 'attach', name, ...(choice?.extra ?? {}) };
  applyLocalAddress(config, host === '0.0.0.0' ? '127.0.0.1' : host, port);
  s.log.info(`attach debugger: ${type} on ${entry.localAddress} (queue '${entry.spec.queue}')`);
  return vscode.debug.startDebugging(vscode.workspace.workspaceFolders?.[0], config);
}
