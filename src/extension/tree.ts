/**
 * The Tunnels view: the configured brokers at the top level (also without
 * tunnels), each broker's tunnels under it. A tunnel's row starts with what
 * matters most at a narrow width, its queue; the description has the kind,
 * the local address, the state (and for a forward whether anybody publishes
 * the queue) and live counts; the tooltip the details and the last error.
 *
 * Nodes are kept per tunnel and per broker, and a change to one tunnel
 * refreshes only its item: a full refresh makes VS Code forget the items'
 * handles for a moment, and a click on an inline action in that moment
 * would run the command without its tunnel.
 */
import * as vscode from 'vscode';
import type { TunnelState } from '../tunnel';
import type { Brokers } from './brokers';
import type { TunnelEntry, TunnelManager } from './manager';
import { formatBytes, plural } from './model';
import { redactUrl } from '../stream/url';

export interface BrokerNode {
  type: 'broker';
  name: string;
}
export interface TunnelNode {
  type: 'tunnel';
  entry: TunnelEntry;
}
/** A node of another section of the view (discoveryTree.ts); that section draws it. */
export interface SectionNode {
  type: 'section';
  kind: string;
}
export type Node = BrokerNode | TunnelNode | SectionNode;

/** Another section of the view, after the brokers' tunnels: its own nodes, items and change events. */
export interface TreeSection {
  roots(): SectionNode[];
  owns(node: SectionNode): boolean;
  children(node: SectionNode): SectionNode[];
  parent(node: SectionNode): SectionNode | undefined;
  item(node: SectionNode): vscode.TreeItem;
  readonly onDidChange: vscode.Event<SectionNode | undefined>;
}

/** The words a row shows for its state; a ready forward whose queue nobody publishes says so. */
export function stateWords(e: TunnelEntry): string {
  const stats = e.stats();
  if (e.state === 'reconnecting' && stats?.held !== undefined) return `reconnecting, ${stats.held} stream${stats.held === 1 ? '' : 's'} held`;
  const blocked = stats?.blocked;
  if (blocked !== undefined && e.running) return `${e.state} · blocked by the broker: ${blocked}`;
  if (e.spec.kind === 'forward' && e.state === 'ready' && e.publisher === false) return 'ready · nobody publishes this queue';
  return e.state;
}

const STATE_ICON: Record<TunnelState, vscode.ThemeIcon> = {
  starting: new vscode.ThemeIcon('loading~spin'),
  ready: new vscode.ThemeIcon('pass-filled', new vscode.ThemeColor('testing.iconPassed')),
  reconnecting: new vscode.ThemeIcon('sync~spin', new vscode.ThemeColor('problemsWarningIcon.foreground')),
  failed: new vscode.ThemeIcon('error', new vscode.ThemeColor('problemsErrorIcon.foreground')),
  stopped: new vscode.ThemeIcon('circle-slash'),
};
/** A ready forward whose queue nobody publishes: it listens, but leads nowhere yet. */
const NOBODY_ICON = new vscode.ThemeIcon('circle-large-outline', new vscode.ThemeColor('problemsWarningIcon.foreground'));

export class TunnelTree implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subscription: vscode.Disposable;
  private readonly brokerNodes = new Map<string, BrokerNode>();
  private readonly tunnelNodes = new Map<string, TunnelNode>();
  private readonly sections: TreeSection[] = [];
  private readonly sectionSubscriptions: vscode.Disposable[] = [];

  constructor(
    private readonly manager: TunnelManager,
    private readonly isKept: (entry: TunnelEntry) => boolean,
    private readonly brokers?: Pick<Brokers, 'list'>,
  ) {
    this.subscription = manager.onDidChange((entry) => this.refresh(entry));
  }

  /** Show another section after the tunnels (discoveryTree.ts). */
  addSection(section: TreeSection): void {
    this.sections.push(section);
    this.sectionSubscriptions.push(section.onDidChange((n) => this.changed.fire(n)));
    this.changed.fire(undefined);
  }

  private sectionOf(node: Node): TreeSection | undefined {
    return node.type === 'section' ? this.sections.find((s) => s.owns(node)) : undefined;
  }

  /** Refresh one tunnel's item (when it is shown already), or the whole view. */
  refresh(entry?: TunnelEntry): void {
    const node = entry && this.tunnelNodes.get(entry.id);
    this.changed.fire(node);
  }

  /** The brokers the view lists: the configured ones in settings order, then any a tunnel still names. */
  brokerNames(): string[] {
    const configured = this.brokers?.list().map((b) => b.name) ?? [];
    const used = [...new Set(this.manager.list().map((e) => e.spec.broker))].filter((n) => !configured.includes(n)).sort();
    return [...configured, ...used];
  }

  getChildren(node?: Node): Node[] {
    const entries = this.manager.list();
    if (!node) {
      const ids = new Set(entries.map((e) => e.id));
      for (const id of this.tunnelNodes.keys()) if (!ids.has(id)) this.tunnelNodes.delete(id);
      return [...this.brokerNames().map((name) => this.brokerNode(name)), ...this.sections.flatMap((s) => s.roots())];
    }
    if (node.type === 'section') return this.sectionOf(node)?.children(node) ?? [];
    if (node.type === 'broker') {
      return entries.filter((e) => e.spec.broker === node.name).map((entry) => this.tunnelNode(entry));
    }
    return [];
  }

  getParent(node: Node): Node | undefined {
    if (node.type === 'section') return this.sectionOf(node)?.parent(node);
    return node.type === 'tunnel' ? this.brokerNode(node.entry.spec.broker) : undefined;
  }

  private brokerNode(name: string): BrokerNode {
    let n = this.brokerNodes.get(name);
    if (!n) this.brokerNodes.set(name, (n = { type: 'broker', name }));
    return n;
  }

  private tunnelNode(entry: TunnelEntry): TunnelNode {
    let n = this.tunnelNodes.get(entry.id);
    if (!n || n.entry !== entry) this.tunnelNodes.set(entry.id, (n = { type: 'tunnel', entry }));
    return n;
  }

  getTreeItem(node: Node): vscode.TreeItem {
    if (node.type === 'section') return this.sectionOf(node)?.item(node) ?? new vscode.TreeItem('');
    if (node.type === 'broker') {
      const tunnels = this.manager.list().filter((e) => e.spec.broker === node.name);
      const item = new vscode.TreeItem(node.name, tunnels.length > 0 ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None);
      const configured = this.brokers?.list().find((b) => b.name === node.name);
      const address = configured ? redactUrl(configured.url) : tunnels[0]?.brokerAddress;
      // VS Code keeps an item's collapsible state by id: a broker that gets its first tunnel must not stay a collapsed leaf.
      item.id = `broker:${node.name}${tunnels.length > 0 ? '' : ':empty'}`;
      item.description = [address, tunnels.length === 0 ? 'no tunnels' : undefined, configured || !this.brokers ? undefined : 'not configured'].filter(Boolean).join(' · ');
      item.tooltip = `Broker '${node.name}'${address ? ` at ${address}` : ''}: ${plural(tunnels.length, 'tunnel')}`;
      item.iconPath = new vscode.ThemeIcon('server');
      item.contextValue = 'broker';
      return item;
    }
    return this.tunnelItem(node.entry);
  }

  private tunnelItem(e: TunnelEntry): vscode.TreeItem {
    const { spec } = e;
    const item = new vscode.TreeItem(spec.queue, vscode.TreeItemCollapsibleState.None);
    item.id = `tunnel:${e.id}`;
    const st = e.stats();
    const state = e.state;
    const parts: string[] = [spec.kind, spec.address, stateWords(e)];
    if (st && e.running) parts.push(plural(st.activeConnections, 'connection'), `↑${formatBytes(st.tcpToStream)} ↓${formatBytes(st.streamToTcp)}`);
    item.description = parts.join(' · ');
    item.iconPath = spec.kind === 'forward' && state === 'ready' && e.publisher === false ? NOBODY_ICON : STATE_ICON[state];
    const kept = this.isKept(e);
    item.contextValue = `tunnel;kind=${spec.kind};state=${state};${e.running ? 'running' : 'idle'};${kept ? 'kept' : 'unkept'}`;

    const md = new vscode.MarkdownString(undefined, true);
    md.appendMarkdown(
      spec.kind === 'forward'
        ? `**Forward** local \`${spec.address}\` to queue \`${spec.queue}\`\n\n`
        : `**Publish** \`${spec.address}\` on queue \`${spec.queue}\`\n\n`,
    );
    md.appendMarkdown(`Broker: ${e.spec.broker}${e.brokerAddress ? ` (\`${e.brokerAddress}\`)` : ''}\n\n`);
    md.appendMarkdown(`State: ${state}${kept ? ' · kept (starts with the workspace)' : ''}\n\n`);
    if (spec.kind === 'forward' && state === 'ready' && e.publisher !== undefined) {
      md.appendMarkdown(
        e.publisher
          ? 'Publisher: present (something is published on the queue)\n\n'
          : 'Publisher: none — nothing is published on this queue; start `amqp-tunnel publish` on the remote machine\n\n',
      );
    }
    if (st) {
      md.appendMarkdown(
        `Connections: ${st.activeConnections} open, ${st.totalConnections} in all\n\n` +
          `Bytes: ${formatBytes(st.tcpToStream)} sent into the tunnel, ${formatBytes(st.streamToTcp)} received\n\n`,
      );
    }
    const err = e.lastError;
    if (err) md.appendMarkdown(`Last error: ${escapeMd(err)}\n\n`);
    item.tooltip = md;
    return item;
  }

  dispose(): void {
    this.subscription.dispose();
    for (const s of this.sectionSubscriptions) s.dispose();
    this.changed.dispose();
  }
}


function escapeMd(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+!|<>]/g, '\\$&');
}
