/**
 * One-click attach on what is published (the "Published on <broker>"
 * sections, discoveryTree.ts):
 *
 *     amqpTunnel.refreshPublished          a section node, or nothing (every broker)
 *     amqpTunnel.attachPublished           an entry (and the view's selection), { broker, queue, type? }[],
 *                                          or nothing (pick among the listed entries)
 *     amqpTunnel.copyLaunchConfiguration   an entry, or { broker, queue, type? }
 *
 * Attach starts a debug session with the `amqpTunnel` property (no
 * launch.json needed): the debug configuration provider starts a forward of
 * the queue, or reuses a running one, and writes its address into the
 * debugger's fields. The debug type follows the detected protocol; only an
 * unknown protocol asks. A debugger extension that is not installed is named,
 * with an action that opens it in the Extensions view. Several entries: one
 * session each.
 */
import * as vscode from 'vscode';
import type { PublisherInfo } from '../tunnel/discovery';
import type { Services } from './services';
import { installedDebugTypes } from './debug/attach';
import { attachConfiguration, debuggerFor, debuggerOfType, debuggerRows, installedType, entryDescription, entryDetail } from './discoveryModel';
import { isPublishedEntry, type PublishedSection } from './discoveryTree';
import { COMMANDS } from './ids';

/** What the attach commands report (the notification's text and actions), for tests. */
export interface PublishedReport {
  message: string;
  actions: string[];
}

export interface PublishedSupport {
  section: PublishedSection;
  onDidReport: vscode.Event<PublishedReport>;
}

interface EntryRef {
  broker: string;
  queue: string;
  /** Debug type to use instead of the detected protocol's. */
  type?: string;
}

const OPEN_EXTENSIONS = 'Open in Extensions View';

/** The section of this window, for "Forward port over AMQP" (set by registerPublished). */
let current: PublishedSection | undefined;

export function registerPublished(context: vscode.ExtensionContext, s: Services, section: PublishedSection): PublishedSupport {
  current = section;
  context.subscriptions.push({ dispose: () => (current = current === section ? undefined : current) });
  const reports = new vscode.EventEmitter<PublishedReport>();
  const report = (message: string, ...actions: string[]): Thenable<string | undefined> => {
    reports.fire({ message, actions });
    s.log.warn(message);
    return vscode.window.showErrorMessage(message, ...actions);
  };

  /** The entries a command was run on: the clicked one (with the selection, when it is part of it), refs, or a pick. */
  const resolve = async (arg: unknown, selection: unknown, canPickMany: boolean, title: string): Promise<Array<{ broker: string; info: PublisherInfo; type?: string }> | undefined> => {
    if (isPublishedEntry(arg)) {
      const selected = Array.isArray(selection) ? selection.filter(isPublishedEntry) : [];
      const nodes = selected.includes(arg) ? selected : [arg];
      return nodes.map((n) => ({ broker: n.broker, info: n.info }));
    }
    const refs = (Array.isArray(arg) ? arg : arg ? [arg] : []) as EntryRef[];
    if (refs.length > 0) {
      const out: Array<{ broker: string; info: PublisherInfo; type?: string }> = [];
      for (const r of refs) {
        const info = (await section.published(r.broker)).find((p) => p.queue === r.queue);
        if (!info) {
          void report(`Nothing is published on queue '${r.queue}' at broker '${r.broker}' — is the publisher running (and not --unlisted)?`);
          return undefined;
        }
        out.push({ broker: r.broker, info, type: r.type });
      }
      return out;
    }
    const listed = section.entries();
    if (listed.length === 0) {
      void vscode.window.showInformationMessage('Nothing is listed as published: open the Tunnels view to see what the brokers publish.');
      return undefined;
    }
    const items = listed.map((n) => ({ label: n.info.queue, description: entryDescription(n.info), detail: `${n.broker} · ${entryDetail(n.info)}`, node: n }));
    const picked = canPickMany
      ? await vscode.window.showQuickPick(items, { title, canPickMany: true })
      : await vscode.window.showQuickPick(items, { title }).then((i) => (i ? [i] : undefined));
    return picked?.map((i) => ({ broker: i.node.broker, info: i.node.info }));
  };

  /** The debug type for an entry: the detected protocol's (installed), or the user's pick for an unknown one. */
  const debugType = async (info: PublisherInfo, explicit?: string): Promise<{ type: string; extra: Record<string, unknown> } | undefined> => {
    const installed = installedDebugTypes();
    if (explicit) {
      const need = debuggerOfType(explicit);
      return { type: explicit, extra: need?.extra ?? {} };
    }
    const need = debuggerFor(info.protocol);
    if (need) {
      const type = installedType(need, installed);
      if (type) return { type, extra: need.extra };
      // Not awaited: the attach of the other selected entries goes on while the notification shows.
      void report(`Attaching to '${info.queue}' (${need.label}) needs the ${need.extensionName} extension (${need.extensionId}), which is not installed.`, OPEN_EXTENSIONS).then(
        (choice) => {
          if (choice === OPEN_EXTENSIONS) void vscode.commands.executeCommand('workbench.extensions.search', `@id:${need.extensionId}`);
        },
      );
      return undefined;
    }
    const pick = await vscode.window.showQuickPick(
      debuggerRows(installed).map((r) => ({ label: r.label, description: r.description, type: r.type ?? r.need.types[0]!, extra: r.need.extra })),
      { title: `Attach Debugger to ${info.queue} (${entryDescription(info)})`, placeHolder: 'The protocol was not detected: what runs on the remote side?' },
    );
    return pick && { type: pick.type, extra: pick.extra };
  };

  const attach = async (arg?: unknown, selection?: unknown): Promise<boolean[]> => {
    const targets = await resolve(arg, selection, true, 'Attach Debugger to which published processes?');
    if (!targets) return [];
    const results: boolean[] = [];
    for (const t of targets) {
      const dt = await debugType(t.info, t.type);
      if (!dt) {
        results.push(false);
        continue;
      }
      const config = attachConfiguration(t.info, t.broker, dt.type, dt.extra) as vscode.DebugConfiguration;
      s.log.info(`attach debugger: ${dt.type} to queue '${t.info.queue}' on broker '${t.broker}' (${entryDescription(t.info)})`);
      results.push(await vscode.debug.startDebugging(vscode.workspace.workspaceFolders?.[0], config));
    }
    return results;
  };

  const copy = async (arg?: unknown): Promise<string | undefined> => {
    const targets = await resolve(arg, undefined, false, 'Copy the launch.json configuration of which published process?');
    const t = targets?.[0];
    if (!t) return undefined;
    const need = debuggerFor(t.info.protocol);
    const dt = t.type ? { type: t.type, extra: {} } : need ? { type: installedType(need, installedDebugTypes()) ?? need.types[0]!, extra: need.extra } : await debugType(t.info);
    if (!dt) return undefined;
    const text = JSON.stringify(attachConfiguration(t.info, t.broker, dt.type, dt.extra), null, 2);
    await vscode.env.clipboard.writeText(text);
    vscode.window.setStatusBarMessage(`Copied the launch.json configuration for ${t.info.queue}`, 4000);
    return text;
  };

  context.subscriptions.push(
    reports,
    vscode.commands.registerCommand(COMMANDS.refreshPublished, (node?: { broker?: string }) => section.refresh(node?.broker)),
    vscode.commands.registerCommand(COMMANDS.attachPublished, attach),
    vscode.commands.registerCommand(COMMANDS.copyLaunchConfiguration, copy),
  );
  return { section, onDidReport: reports.event };
}

/**
 * The discovered queues of `broker` as pick items for "Forward port over
 * AMQP", first in its list. Empty when the broker cannot be asked (the user
 * can still type a name).
 */
export async function discoveredQueueItems(broker: string): Promise<vscode.QuickPickItem[]> {
  if (!current) return [];
  const list = await current.published(broker).catch(() => [] as PublisherInfo[]);
  if (list.length === 0) return [];
  return [
    { label: `Published on ${broker}`, kind: vscode.QuickPickItemKind.Separator },
    ...list.map((p) => ({ label: p.queue, description: entryDescription(p), detail: entryDetail(p) })),
  ];
}
