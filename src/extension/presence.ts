/**
 * Publisher presence for the Tunnels view: while the view is visible, every
 * ready forward's queue is checked for a publisher (the passive check F5
 * does before attaching, debug/probe.ts: it never reaches the debuggee), so
 * a row can tell "ready, publisher present" from "ready, nobody publishes".
 * One broker connection per broker and round; rounds never overlap.
 *
 * The check is a passive declare, which RabbitMQ logs as an error when the
 * queue is live (exclusive to its publisher). So while nothing changes the
 * rounds back off (3 s, doubling, up to 30 s), as the stream library's v1
 * liveness probes do: a forward left visible costs the broker's log about
 * two lines a minute. Any change (a publisher came or went, a forward became
 * ready, the view was shown again) starts over at 3 s.
 *
 * A publisher of amqp-tunnel announces itself on the broker when it starts
 * (src/tunnel/discovery.ts), and the "Published on" lists of the same view
 * hear it: a forward whose queue shows up there is marked present at once,
 * without waiting for the next round (which may be 30 s away); one whose
 * publisher drops out of the lists is checked at once.
 */
import * as vscode from 'vscode';
import type { Brokers } from './brokers';
import type { TunnelManager } from './manager';
import { publishedQueues } from './debug/probe';
import { announcedPresence, presenceKey } from './discoveryModel';
import type { PublisherInfo } from '../tunnel/discovery';

/** The "Published on" lists: what publishers announced on each broker (PublishedSection). */
export interface Announcements {
  readonly onDidChange: vscode.Event<unknown>;
  entries(): ReadonlyArray<{ broker: string; info: PublisherInfo }>;
}

/** How soon the queues of ready forwards are checked again after a change, while the view is visible. */
export const PRESENCE_INTERVAL_MS = 3000;
/** The longest wait between checks while nothing changes. */
export const PRESENCE_MAX_INTERVAL_MS = 30_000;

export class PublisherWatch implements vscode.Disposable {
  private timer?: NodeJS.Timeout;
  private delay = PRESENCE_INTERVAL_MS;
  private visible = false;
  private round?: Promise<void>;
  private again = false;
  private readonly subscriptions: vscode.Disposable[] = [];

  constructor(
    private readonly manager: TunnelManager,
    private readonly brokers: Brokers,
    view: vscode.TreeView<unknown>,
    announcements?: Announcements,
  ) {
    const visibility = (visible: boolean): void => {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.visible = visible;
      this.delay = PRESENCE_INTERVAL_MS;
      if (visible) void this.check();
    };
    this.subscriptions.push(
      view.onDidChangeVisibility((e) => visibility(e.visible)),
      // A forward that just became ready is checked at once, not at the next round.
      manager.onDidChange((e) => {
        if (view.visible && e?.spec.kind === 'forward' && e.state === 'ready' && e.publisher === undefined) {
          this.delay = PRESENCE_INTERVAL_MS;
          void this.check();
        }
      }),
    );
    if (announcements) {
      let before = new Set<string>();
      this.subscriptions.push(
        announcements.onDidChange(() => {
          const listed = new Set(announcements.entries().map((n) => presenceKey(n.broker, n.info.queue)));
          const forwards = this.manager.list().filter((e) => e.spec.kind === 'forward' && e.state === 'ready');
          const { present, recheck } = announcedPresence(forwards.map((e) => ({ broker: e.spec.broker, queue: e.spec.queue, publisher: e.publisher })), listed, before);
          before = listed;
          for (const i of present) this.manager.setPublisher(forwards[i]!, true);
          if (present.length > 0 || recheck) this.delay = PRESENCE_INTERVAL_MS;
          if (recheck && this.visible) void this.check();
        }),
      );
    }
    visibility(view.visible);
  }

  /** Check every ready forward now (a round in progress is followed by one more). */
  check(): Promise<void> {
    if (this.round) {
      this.again = true;
      return this.round;
    }
    this.round = this.runRound().then(
      (changed) => {
        this.delay = changed ? PRESENCE_INTERVAL_MS : Math.min(this.delay * 2, PRESENCE_MAX_INTERVAL_MS);
      },
      () => undefined,
    ).finally(() => {
      this.round = undefined;
      if (this.again) {
        this.again = false;
        void this.check();
        return;
      }
      clearTimeout(this.timer);
      this.timer = this.visible ? setTimeout(() => void this.check(), this.delay) : undefined;
    });
    return this.round;
  }

  /** One round; true when a row's publisher presence changed. */
  private async runRound(): Promise<boolean> {
    let changed = false;
    const set = (e: (typeof forwards)[number], publisher: Parameters<TunnelManager['setPublisher']>[1]): void => {
      if (e.publisher !== publisher) changed = true;
      this.manager.setPublisher(e, publisher);
    };
    const forwards = this.manager.list().filter((e) => e.spec.kind === 'forward' && e.state === 'ready');
    const byBroker = new Map<string, typeof forwards>();
    for (const e of forwards) byBroker.set(e.spec.broker, [...(byBroker.get(e.spec.broker) ?? []), e]);
    await Promise.all(
      [...byBroker].map(async ([broker, entries]) => {
        try {
          const found = await publishedQueues(await this.brokers.connectUrl(broker), [...new Set(entries.map((e) => e.spec.queue))], 'VS Code amqp-tunnel presence');
          for (const e of entries) if (e.state === 'ready') set(e, found.get(e.spec.queue));
        } catch {
          // The broker is unreachable or refuses the login: the forward's own state says so.
          for (const e of entries) set(e, undefined);
        }
      }),
    );
    return changed;
  }

  dispose(): void {
    this.visible = false;
    clearTimeout(this.timer);
    for (const d of this.subscriptions) d.dispose();
  }
}
