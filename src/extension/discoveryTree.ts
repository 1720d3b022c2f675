/**
 * The "Published on <broker>" sections of the Tunnels view: what teammates
 * and servers publish on each configured broker (src/tunnel/discovery.ts),
 * live while the view is visible (one DiscoveryWatch per broker, stopped
 * when the view is hidden), with a refresh action. The section plugs into
 * TunnelTree as a TreeSection; its nodes are `{ type: 'section' }` nodes
 * the rest of the extension ignores.
 *
 * It also gives "Forward port over AMQP" its list of discovered queues.
 */
import * as vscode from 'vscode';
import { describeError } from '../common/errors';
import type { Logger } from '../common/logger';
import { redactUrl } from '../stream/url';
import { DiscoveryWatch, listPublished, type PublisherInfo } from '../tunnel/discovery';
import { brokerTransport, type Transport } from '../tunnel/transport';
import type { Brokers } from './brokers';
import { entryDescription, protocolIcon, protocolText, uptime } from './discoveryModel';
import { CONFIG_SECTION, SETTINGS } from './ids';
import type { SectionNode, TreeSection } from './tree';

export interface PublishedRootNode extends SectionNode {
  kind: 'published';
  broker: string;
}
export interface PublishedEntryNode extends SectionNode {
  kind: 'publishedEntry';
  broker: string;
  info: PublisherInfo;
}
export interface PublishedNoteNode extends SectionNode {
  kind: 'publishedNote';
  broker: string;
  text: string;
  icon: string;
}
export type PublishedNode = PublishedRootNode | PublishedEntryNode | PublishedNoteNode;

export function isPublishedEntry(n: unknown): n is PublishedEntryNode {
  return !!n && typeof n === 'object' && (n as SectionNode).type === 'section' && (n as SectionNode).kind === 'publishedEntry';
}

const CONNECTION_NAME = 'VS Code amqp-tunnel discovery';

interface BrokerWatch {
  watch: DiscoveryWatch;
  transport: Transport;
  address: string;
}

export class PublishedSection implements TreeSection, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<SectionNode | undefined>();
  readonly onDidChange = this.changed.event;
  private readonly watches = new Map<string, BrokerWatch>();
  private readonly starting = new Map<string, Promise<BrokerWatch | undefined>>();
  private readonly startErrors = new Map<string, string>();
  private readonly rootNodes = new Map<string, PublishedRootNode>();
  private readonly entryNodes = new Map<string, PublishedEntryNode>();
  private readonly subscriptions: vscode.Disposable[] = [];
  private visible = false;

  constructor(
    private readonly brokers: Brokers,
    private readonly log: Logger,
  ) {
    this.subscriptions.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (!e.affectsConfiguration(`${CONFIG_SECTION}.${SETTINGS.brokers}`)) return;
        const names = new Set(this.brokers.list().map((b) => b.name));
        for (const name of [...this.watches.keys()]) if (!names.has(name)) void this.stopWatch(name);
        this.changed.fire(undefined);
      }),
    );
  }

  /** Follow the view's visibility: ask the brokers while it shows, stop when it hides. */
  follow(view: vscode.TreeView<unknown>): void {
    this.subscriptions.push(view.onDidChangeVisibility((e) => this.setVisible(e.visible)));
    this.setVisible(view.visible);
  }

  /** Whether the view shows (and the brokers are being asked). */
  get isVisible(): boolean {
    return this.visible;
  }

  setVisible(visible: boolean): void {
    if (visible === this.visible) return;
    this.visible = visible;
    if (visible) {
      for (const b of this.brokers.list()) void this.ensure(b.name);
    } else {
      for (const name of [...this.watches.keys()]) void this.stopWatch(name);
    }
    this.changed.fire(undefined);
  }

  /** Ask again now (one broker, or all; only while the view is visible); resolves when the answers are in. */
  async refresh(broker?: string): Promise<void> {
    if (!this.visible) return;
    const names = broker ? [broker] : this.brokers.list().map((b) => b.name);
    await Promise.all(
      names.map(async (name) => {
        // A broker that could not be asked (a password set since, say) gets a fresh connection.
        if (this.watches.get(name)?.watch.error || this.startErrors.has(name)) await this.stopWatch(name);
        const w = await this.ensure(name);
        await w?.watch.refresh();
      }),
    );
    this.changed.fire(undefined);
  }

  /** What is published on `broker`: the live list when the view shows it, else asked once (about half a second). */
  async published(broker: string): Promise<PublisherInfo[]> {
    const w = this.watches.get(broker);
    if (w && w.watch.listed && !w.watch.error) return w.watch.list();
    const transport = brokerTransport(await this.brokers.connectUrl(broker), { connectionName: CONNECTION_NAME });
    try {
      return await listPublished(await transport.acquire());
    } finally {
      await transport.close();
    }
  }

  /** The listed entries (for a command run without a tree item). */
  entries(): PublishedEntryNode[] {
    return [...this.watches.entries()].flatMap(([broker, w]) => w.watch.list().map((info) => this.entryNode(broker, info)));
  }

  // ---- TreeSection ------------------------------------------------------------------

  roots(): SectionNode[] {
    const names = this.brokers.list().map((b) => b.name);
    for (const name of this.rootNodes.keys()) if (!names.includes(name)) this.rootNodes.delete(name);
    return names.map((name) => this.rootNode(name));
  }

  owns(node: SectionNode): boolean {
    return node.kind === 'published' || node.kind === 'publishedEntry' || node.kind === 'publishedNote';
  }

  children(node: SectionNode): SectionNode[] {
    if (node.kind !== 'published') return [];
    const broker = (node as PublishedRootNode).broker;
    const note = (text: string, icon: string): PublishedNoteNode => ({ type: 'section', kind: 'publishedNote', broker, text, icon });
    if (!this.visible) return [];
    const startError = this.startErrors.get(broker);
    if (startError) return [note(`cannot ask the broker: ${startError}`, 'error')];
    const w = this.watches.get(broker);
    if (!w || !w.watch.listed) {
      void this.ensure(broker);
      return [note('asking the broker…', 'loading~spin')];
    }
    if (w.watch.error) return [note(`cannot ask the broker: ${w.watch.error}`, 'error')];
    const list = w.watch.list();
    if (list.length === 0) return [note('nothing is published (publishers started with --unlisted are not shown)', 'info')];
    return list.map((info) => this.entryNode(broker, info));
  }

  parent(node: SectionNode): SectionNode | undefined {
    const n = node as PublishedNode;
    return n.kind === 'published' ? undefined : this.rootNode(n.broker);
  }

  item(node: SectionNode): vscode.TreeItem {
    const n = node as PublishedNode;
    if (n.kind === 'published') {
      const item = new vscode.TreeItem(`Published on ${n.broker}`, vscode.TreeItemCollapsibleState.Expanded);
      item.id = `published:${n.broker}`;
      const url = this.brokers.get(n.broker)?.url;
      item.description = url ? redactUrl(url) : undefined;
      item.iconPath = new vscode.ThemeIcon('radio-tower');
      item.contextValue = 'publishedRoot';
      item.tooltip = `What is published on broker '${n.broker}' (live while this view is visible)`;
      return item;
    }
    if (n.kind === 'publishedNote') {
      const item = new vscode.TreeItem(n.text, vscode.TreeItemCollapsibleState.None);
      item.id = `published:${n.broker}:note`;
      item.iconPath = new vscode.ThemeIcon(n.icon);
      item.contextValue = 'publishedNote';
      return item;
    }
    const { info } = n;
    const item = new vscode.TreeItem(info.queue, vscode.TreeItemCollapsibleState.None);
    item.id = `published:${n.broker}:${info.queue}`;
    item.description = entryDescription(info);
    item.iconPath = new vscode.ThemeIcon(protocolIcon(info.protocol));
    item.contextValue = `publishedEntry;protocol=${info.protocol}`;
    const md = new vscode.MarkdownString(undefined, true);
    md.appendMarkdown('**');
    md.appendText(info.queue);
    md.appendMarkdown('** published on ');
    md.appendText(`${n.broker}\n\n`);
    md.appendText(`Debugger: ${protocolText(info)}${info.title ? ` — ${info.title}` : ''}\n\n`);
    md.appendText(`Target: ${info.target} on ${info.host}${info.targetPid !== undefined ? ` (pid ${info.targetPid})` : ''}\n\n`);
    md.appendText(`Publisher: pid ${info.pid}, amqp-tunnel ${info.version}, up ${uptime(info.startedAt)} (since ${info.startedAt})\n\n`);
    md.appendText(info.secretRequired ? 'A tunnel secret is required (Set Tunnel Secret).' : 'No tunnel secret required.');
    item.tooltip = md;
    return item;
  }

  // ---- internals ----------------------------------------------------------------------

  private rootNode(broker: string): PublishedRootNode {
    let n = this.rootNodes.get(broker);
    if (!n) this.rootNodes.set(broker, (n = { type: 'section', kind: 'published', broker }));
    return n;
  }

  /** One node per broker and queue, kept across refreshes (so a selection survives); its info is the latest. */
  private entryNode(broker: string, info: PublisherInfo): PublishedEntryNode {
    const key = JSON.stringify([broker, info.queue]);
    let n = this.entryNodes.get(key);
    if (!n) this.entryNodes.set(key, (n = { type: 'section', kind: 'publishedEntry', broker, info }));
    n.info = info;
    return n;
  }

  private ensure(broker: string): Promise<BrokerWatch | undefined> {
    const existing = this.watches.get(broker);
    if (existing) return Promise.resolve(existing);
    let p = this.starting.get(broker);
    if (p) return p;
    p = (async () => {
      try {
        const b = this.brokers.get(broker);
        if (!b) return undefined;
        const address = redactUrl(b.url);
        const transport = brokerTransport(await this.brokers.connectUrl(broker), { connectionName: CONNECTION_NAME }, address);
        const watch = new DiscoveryWatch(transport, { logger: this.log });
        const w: BrokerWatch = { watch, transport, address };
        watch.on('change', () => {
          for (const k of this.entryNodes.keys()) if (JSON.parse(k)[0] === broker && !watch.list().some((i) => i.queue === JSON.parse(k)[1])) this.entryNodes.delete(k);
          this.changed.fire(this.rootNode(broker));
        });
        this.startErrors.delete(broker);
        this.watches.set(broker, w);
        if (this.visible) watch.start();
        return w;
      } catch (err) {
        this.startErrors.set(broker, describeError(err));
        this.changed.fire(this.rootNode(broker));
        return undefined;
      } finally {
        this.starting.delete(broker);
      }
    })();
    this.starting.set(broker, p);
    return p;
  }

  private async stopWatch(broker: string): Promise<void> {
    const w = this.watches.get(broker);
    this.watches.delete(broker);
    this.startErrors.delete(broker);
    if (!w) return;
    w.watch.removeAllListeners('change');
    await w.watch.stop().catch(() => undefined);
    await w.transport.close().catch(() => undefined);
  }

  dispose(): void {
    for (const name of [...this.watches.keys()]) void this.stopWatch(name);
    for (const s of this.subscriptions) s.dispose();
    this.changed.dispose();
  }
}
