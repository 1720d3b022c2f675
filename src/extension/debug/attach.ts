/**
 * "Attach Debugger" on a forward in the Tunnels view: pick the kind of
 * process on the far side and start an attach session on the forward's
 * local address, with the debugger's own field names (fields.ts). The
 * forward keeps running when the session ends: the user started it.
 *
 *     amqpTunnel.attachDebugger  a tree item, { id, type? }, or nothing (pick a forward)
 */
import * as vscode from 'vscode';
import type { Services } from '../commands';
import type { TunnelEntry } from '../manager';
import type { Node } from '../tree';
import { parseBind } from '../../tunnel/spec';
import { applyLocalAddress } from './fields';

interface DebuggerChoice {
  label: string;
  /** Debug types to try, the first one installed wins. */
  types: string[];
  extra: Record<string, unknown>;
}

export const DEBUGGER_CHOICES: DebuggerChoice[] = [
  { label: 'Node.js', types: ['node'], extra: {} },
  { label: 'Python (debugpy)', types: ['debugpy', 'python'], extra: { justMyCode: false } },
  { label: 'Java', types: ['java'], extra: {} },
  { label: 'Go (Delve)', types: ['go'], extra: { mode: 'remote' } },
];

/** Debug types contributed by installed extensions. */
function installedDebugTypes(): Set<string> {
  const types = new Set<string>();
  for (const ext of vscode.extensions.all) {
    const debuggers = (ext.packageJSON as { contributes?: { debuggers?: Array<{ type?: string }> } })?.contributes?.debuggers ?? [];
    for (const d of debuggers) if (d.type) types.add(d.type);
  }
  // js-debug registers 'pwa-node' and answers to 'node'.
  if (types.has('pwa-node')) types.add('node');
  return types;
}

export async function attachDebuggerCommand(s: Services, ref: Node | { id: string; type?: string } | undefined): Promise<boolean> {
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
    const pick =
      ready.length === 1
        ? { entry: ready[0] }
        : await vscode.window.showQuickPick(
            ready.map((e) => ({ label: `${e.localAddress} → ${e.spec.queue}`, description: e.spec.broker, entry: e })),
            { placeHolder: 'Attach through which forward?' },
          );
    entry = pick?.entry;
  }
  if (!entry) return false;
  if (entry.spec.kind !== 'forward') {
    void vscode.window.showErrorMessage('Attach Debugger works on a forward (the local end of a remote debug port), not on a publish.');
    return false;
  }
  if (!type) {
    const installed = installedDebugTypes();
    const pick = await vscode.window.showQuickPick(
      DEBUGGER_CHOICES.map((c) => {
        const t = c.types.find((x) => installed.has(x));
        return { label: c.label, description: t ? `type "${t}"` : 'its debugger extension is not installed', type: t ?? c.types[0] };
      }),
      { title: `Attach Debugger to ${entry.localAddress} (queue ${entry.spec.queue})`, placeHolder: 'What runs on the remote side?' },
    );
    if (!pick) return false;
    type = pick.type;
  }
  const choice = DEBUGGER_CHOICES.find((c) => c.types.includes(type!));
  const { host, port } = parseBind(entry.localAddress);
  const config: vscode.DebugConfiguration = { type, request: 'attach', name: `Attach to ${entry.spec.queue} over AMQP`, ...(choice?.extra ?? {}) };
  applyLocalAddress(config, host === '0.0.0.0' ? '127.0.0.1' : host, port);
  s.log.info(`attach debugger: ${type} on ${entry.localAddress} (queue '${entry.spec.queue}')`);
  return vscode.debug.startDebugging(vscode.workspace.workspaceFolders?.[0], config);
}
