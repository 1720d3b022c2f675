/**
 * Publisher presence for the Tunnels view: while the view is visible, every
 * ready forward's queue is checked for a publisher (the passive check F5
 * does before attaching, debug/probe.ts: it never reaches the debuggee), so
 * a row can tell "ready, publisher present" from "ready, nobody publishes".
 * One broker connection per broker and round; rounds never overlap.
 */
import * as vscode from 'vscode';
import type { Brokers } from './brokers';
import type { TunnelManager } from './manager';
import { publishedQueues } from './debug/probe';

/** How often the queues of ready forwards are checked while the view is visible. */
export const PRESENCE_INTERVAL_MS = 3000;

export class PublisherWatch implements vscode.Disposable {
  private timer?: NodeJS.Timeout;
  private round?: Promise<void>;
  private again = false;
  private readonly subscriptions: vscode.Disposable[] = [];

  constructor(
    private readonly manager: TunnelManager,
    private readonly brokers: Brokers,
    view: vscode.TreeView<unknown>,
  ) {
    const visibility = (visible: boolean): void => {
      clearInterval(this.timer);
      this.timer = undefined;
      if (!visible) return;
      void this.check();
      this.timer = setInterval(() => void this.check(), PRESENCE_INTERVAL_MS);
    };
    this.subscriptions.push(
      view.onDidChangeVisibility((e) => visibility(e.visible)),
      // A forward that just became ready is checked at once, not at the next round.
      manager.onDidChange((e) => {
        if (view.visible && e?.spec.kind === 'forward' && e.state === 'ready' && e.publisher === undefined) void this.check();
      }),
    );
    visibility(view.visible);
  }

  /** Check every ready forward now (a round in progress is followed by one more). */
  check(): Promise<void> {
    if (this.round) {
      this.again = true;
      return this.round;
    }
    this.round = this.runRound().finally(() => {
      this.round = undefined;
      if (this.again) {
        this.again = false;
        void this.check();
      }
    });
    return this.round;
  }

  private async runRound(): Promise<void> {
    const forwards = this.manager.list().filter((e) => e.spec.kind === 'forward' && e.state === 'ready');
    const byBroker = new Map<string, typeof forwards>();
    for (const e of forwards) byBroker.set(e.spec.broker, [...(byBroker.get(e.spec.broker) ?? []), e]);
    await Promise.all(
      [...byBroker].map(async ([broker, entries]) => {
        try {
          const found = await publishedQueues(await this.brokers.connectUrl(broker), [...new Set(entries.map((e) => e.spec.queue))], 'VS Code amqp-tunnel presence');
          for (const e of entries) if (e.state === 'ready') this.manager.setPublisher(e, found.get(e.spec.queue));
        } catch {
          // The broker is unreachable or refuses the login: the forward's own state says so.
          for (const e of entries) this.manager.setPublisher(e, undefined);
        }
      }),
    );
  }

  dispose(): void {
    clearInterval(this.timer);
    for (const d of this.subscriptions) d.dispose();
  }
}
