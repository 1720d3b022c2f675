/**
 * The running tunnels of this window. Each entry keeps its spec, so a
 * stopped or failed tunnel stays listed and can be restarted; a forward that
 * asked for port 0 remembers the port it got, so a restart (or "Keep Tunnel")
 * keeps the address a debugger was pointed at.
 */
import * as vscode from 'vscode';
import { forward, publish, type Tunnel, type TunnelState, type TunnelStats, type ForwardTunnel } from '../tunnel';
import { formatHostPort, parseBind, type HostPort } from '../tunnel/spec';
import { MAX_RESUME_GRACE } from '../stream';
import { redactUrl } from '../stream/url';
import type { Logger } from '../common/logger';
import type { Brokers } from './brokers';
import { CONFIG_SECTION, SETTINGS } from './ids';
import { scrub, specKey, type TunnelSpec } from './model';
import type { TunnelSecrets } from './tunnelSecrets';
import { bindNotConfirmedMessage, isAllInterfaces } from './secretModel';

/** How often the tree's byte counts refresh while connections are open. */
const STATS_INTERVAL_MS = 1000;

export class TunnelEntry {
  tunnel?: Tunnel;
  /** The broker address without password, for the tree. */
  brokerAddress = '';
  /** Set when the tunnel failed to start; the tunnel's own last error otherwise. */
  startError?: string;
  /** The error code of that failure (ERR_AMQP_AUTH: a new password restarts the tunnel). */
  startErrorCode?: string;
  /**
   * forward: whether a publisher holds the queue, as last checked
   * (PublisherWatch, while the view is visible); undefined when unknown.
   */
  publisher?: boolean;
  /** Open connections of the current tunnel, counted from its events (no stats rebuilt). */
  open = 0;

  constructor(
    readonly id: string,
    public spec: TunnelSpec,
  ) {}

  get state(): TunnelState {
    return this.tunnel?.state ?? (this.startError ? 'failed' : 'stopped');
  }

  /** forward: the local address that leads to the queue; publish: the local service published. */
  get localAddress(): string {
    return this.spec.address;
  }

  stats(): TunnelStats | undefined {
    return this.tunnel?.stats();
  }

  get lastError(): string | undefined {
    return this.tunnel?.stats().lastError ?? this.startError;
  }

  get running(): boolean {
    const s = this.state;
    return s === 'starting' || s === 'ready' || s === 'reconnecting';
  }

  /** Ready, and for a forward not known to lead nowhere (a publisher is there, or not checked). */
  get usable(): boolean {
    return this.state === 'ready' && this.publisher !== false;
  }
}

export class TunnelManager implements vscode.Disposable {
  private readonly entries = new Map<string, TunnelEntry>();
  private readonly changed = new vscode.EventEmitter<TunnelEntry | undefined>();
  /**
   * Fires with the tunnel whose state or counts changed, or with undefined
   * when tunnels were added or removed.
   */
  readonly onDidChange = this.changed.event;
  private nextId = 1;
  private timer?: NodeJS.Timeout;
  /** Tunnels with open connections: their counts refresh every second. */
  private readonly busy = new Set<TunnelEntry>();

  /**
   * `confirmAllInterfaces` is asked before every start of a forward that
   * would listen on every interface (0.0.0.0, ::), whoever starts it; a
   * "no" starts nothing and rejects with ERR_BIND_NOT_CONFIRMED.
   */
  constructor(
    private readonly brokers: Brokers,
    private readonly log: Logger,
    private readonly tunnelSecrets?: TunnelSecrets,
    private readonly confirmAllInterfaces?: (queue: string, bind: HostPort) => Promise<boolean>,
  ) {}

  list(): TunnelEntry[] {
    return [...this.entries.values()];
  }

  get(id: string): TunnelEntry | undefined {
    return this.entries.get(id);
  }

  /** The listed tunnel with this spec (a forward on port 0 never matches: each asks for a new port). */
  find(spec: TunnelSpec): TunnelEntry | undefined {
    const key = specKey(spec);
    return this.list().find((e) => specKey(e.spec) === key && !spec.address.endsWith(':0'));
  }

  /**
   * Start a tunnel and wait until it is ready. A spec that is listed already
   * is restarted if it is not running and returned as it is if it is.
   * Rejects with a scrubbed error when the first connection fails; the
   * entry then stays listed as failed.
   */
  async start(spec: TunnelSpec): Promise<TunnelEntry> {
    const existing = this.find(spec);
    if (existing) {
      if (!existing.running) {
        await this.confirmBind(existing.spec);
        await this.launch(existing);
      }
      return existing;
    }
    await this.confirmBind(spec);
    const entry = new TunnelEntry(`t${this.nextId++}`, spec);
    this.entries.set(entry.id, entry);
    this.fire(undefined);
    await this.launch(entry);
    return entry;
  }

  async stop(entry: TunnelEntry): Promise<void> {
    const t = entry.tunnel;
    if (!t) return;
    await t.stop();
    this.fire(entry);
  }

  async restart(entry: TunnelEntry): Promise<void> {
    await this.confirmBind(entry.spec);
    await this.stop(entry);
    await this.launch(entry);
  }

  async remove(entry: TunnelEntry): Promise<void> {
    this.entries.delete(entry.id);
    this.fire(undefined);
    await entry.tunnel?.stop();
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.list().map((e) => e.tunnel?.stop()));
  }

  dispose(): void {
    clearInterval(this.timer);
    void this.stopAll();
    this.changed.dispose();
  }

  /** Record whether a forward's queue has a publisher; fires a change only when it changed. */
  setPublisher(entry: TunnelEntry, present: boolean | undefined): void {
    if (entry.publisher === present) return;
    entry.publisher = present;
    this.fire(entry);
  }

  /** The listed forwards of `queue` on `broker`, running ones first. */
  forwardsOf(broker: string, queue: string): TunnelEntry[] {
    return this.list()
      .filter((e) => e.spec.kind === 'forward' && e.spec.broker === broker && e.spec.queue === queue)
      .sort((a, b) => Number(b.running) - Number(a.running));
  }

  /** A forward on every interface starts only once the user said yes; else an ERR_BIND_NOT_CONFIRMED error that says how to keep it local. */
  private async confirmBind(spec: TunnelSpec): Promise<void> {
    if (spec.kind !== 'forward' || !this.confirmAllInterfaces) return;
    const bind = parseBind(spec.address);
    if (!isAllInterfaces(bind) || (await this.confirmAllInterfaces(spec.queue, bind))) return;
    throw Object.assign(new Error(bindNotConfirmedMessage(spec.queue, bind)), { code: 'ERR_BIND_NOT_CONFIRMED' });
  }

  private async launch(entry: TunnelEntry): Promise<void> {
    const { spec } = entry;
    entry.startError = undefined;
    entry.startErrorCode = undefined;
    entry.publisher = undefined;
    entry.tunnel = undefined;
    const broker = this.brokers.get(spec.broker);
    if (!broker) {
      entry.startError = `no broker named '${spec.broker}' is configured`;
      this.fire(entry);
      throw new Error(`${entry.startError}; add it with "AMQP Tunnel: Add Broker"`);
    }
    entry.brokerAddress = redactUrl(broker.url);
    const url = await this.brokers.connectUrl(spec.broker);
    const secret = await this.tunnelSecrets?.get(spec.broker, spec.queue);
    const grace = vscode.workspace.getConfiguration(CONFIG_SECTION).get<number>(SETTINGS.resumeGrace, 30);
    const resumeGrace = typeof grace === 'number' && Number.isFinite(grace) && grace >= 0 ? Math.min(grace, MAX_RESUME_GRACE) : undefined;
    const connectOptions = { connectionName: `VS Code amqp-tunnel ${spec.kind} ${spec.queue}`, ...(resumeGrace !== undefined ? { resumeGrace } : {}) };
    const options = { queue: spec.queue, broker: url, logger: this.log, secret, connectOptions };
    if (spec.kind === 'publish' && !secret) this.tunnelSecrets?.warnUnprotected(spec.broker, spec.queue, spec.address);
    const tunnel = spec.kind === 'forward' ? forward({ ...options, bind: spec.address }) : publish({ ...options, target: spec.address, listed: !vscode.workspace.getConfiguration(CONFIG_SECTION).get<boolean>(SETTINGS.unlisted, false) });
    entry.tunnel = tunnel;
    entry.open = 0;
    tunnel.on('state', () => this.fire(entry));
    tunnel.on('blocked', () => this.fire(entry));
    tunnel.on('unblocked', () => this.fire(entry));
    tunnel.on('connection', () => {
      if (entry.tunnel === tunnel) entry.open++;
      this.fire(entry);
    });
    tunnel.on('connectionClosed', () => {
      if (entry.tunnel === tunnel) entry.open = Math.max(0, entry.open - 1);
      this.fire(entry);
    });
    this.fire(entry);
    try {
      await tunnel.ready;
    } catch (err) {
      const message = scrub((err as Error).message ?? String(err), this.brokers.knownSecrets);
      entry.startError = message;
      entry.startErrorCode = (err as { code?: string }).code;
      this.fire(entry);
      throw Object.assign(new Error(message), { code: (err as { code?: string }).code });
    }
    if (tunnel.kind === 'forward') {
      const bound = (tunnel as ForwardTunnel).address;
      if (bound) entry.spec = { ...spec, address: formatHostPort(bound) };
    }
    this.log.info(`tunnel ${tunnel.name} > ready (${spec.kind === 'forward' ? `local ${entry.spec.address}` : `publishing ${entry.spec.address}`}, broker '${spec.broker}')`);
    this.fire(entry);
  }

  private fire(entry: TunnelEntry | undefined): void {
    this.changed.fire(entry);
    // Only the tunnel that changed is looked at (its live count), not every tunnel's stats:
    // with many connections a full rebuild on every event was O(n^2).
    if (entry) {
      if (this.entries.has(entry.id) && entry.open > 0) this.busy.add(entry);
      else this.busy.delete(entry);
    } else {
      for (const e of this.busy) if (!this.entries.has(e.id)) this.busy.delete(e);
    }
    if (this.busy.size > 0 && !this.timer) {
      this.timer = setInterval(() => {
        for (const e of [...this.busy]) this.fire(e);
      }, STATS_INTERVAL_MS);
    } else if (this.busy.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
