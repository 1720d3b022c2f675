/**
 * The `amqp-tunnel` task type, for `preLaunchTask`:
 *
 *     { "label": "tunnel to my-app", "type": "amqp-tunnel", "queue": "my-app-debug",
 *       "broker": "staging", "localPort": 9229,
 *       "isBackground": true, "problemMatcher": "$amqp-tunnel" }
 *
 * A background task run in a Pseudoterminal (CustomExecution): it checks
 * that something is published on the queue, starts (or reuses) a forward on
 * `localPort`, and prints "amqp-tunnel: starting ..." then
 * "amqp-tunnel: ready: ..." — the `$amqp-tunnel` problem matcher's
 * background patterns, which tell VS Code when the debugger may attach.
 * A failure prints "amqp-tunnel: failed: <cause>" and closes the terminal
 * with exit code 1. VS Code's debug runner treats a background task that
 * went idle as a success whatever it printed, so the run is also recorded
 * here: the debug configuration provider (provider.ts) looks it up after the
 * preLaunchTask and cancels the launch with the cause.
 *
 * The task keeps running (and the forward open) until it is terminated; a
 * forward the task started is stopped and removed then.
 */
import * as vscode from 'vscode';
import { PROBLEM_MATCHER, TASK_TYPE } from '../ids';
import type { Services } from '../services';
import type { TunnelEntry } from '../manager';
import { TASK_LINES, parseTaskDefinition, type TunnelTaskDefinition } from './fields';
import { brokerFor, ensureForward, releaseForward } from './forwards';

export type TaskRunState = 'starting' | 'ready' | 'failed' | 'ended';

/** One run of an amqp-tunnel task, as the debug configuration provider needs it. */
export interface TaskRun {
  label: string;
  definition: TunnelTaskDefinition;
  state: TaskRunState;
  /** Why it failed, in words (names the queue and the broker). */
  failure?: string;
  /** Settles when the run is ready, failed or ended. */
  settled: Promise<void>;
}

export class TunnelTasks implements vscode.TaskProvider {
  /** The latest run per task label. */
  private readonly runs = new Map<string, TaskRun>();

  constructor(private readonly s: Services) {}

  /** The latest run of the task a `preLaunchTask` names (a label, or a task identifier object). */
  lastRun(preLaunchTask: unknown): TaskRun | undefined {
    if (typeof preLaunchTask === 'string') return this.runs.get(preLaunchTask);
    if (preLaunchTask && typeof preLaunchTask === 'object' && (preLaunchTask as { type?: unknown }).type === TASK_TYPE) {
      const want = preLaunchTask as Record<string, unknown>;
      const matches = [...this.runs.values()].filter(
        (r) => r.definition.queue === want.queue && (want.localPort === undefined || Number(want.localPort) === r.definition.localPort),
      );
      return matches[matches.length - 1];
    }
    return undefined;
  }

  provideTasks(): vscode.Task[] {
    // Tasks come from tasks.json; there is nothing to detect.
    return [];
  }

  resolveTask(task: vscode.Task): vscode.Task | undefined {
    if (task.definition.type !== TASK_TYPE) return undefined;
    return this.build(task.definition, task.scope ?? vscode.TaskScope.Workspace, task.name);
  }

  private build(definition: vscode.TaskDefinition, scope: vscode.WorkspaceFolder | vscode.TaskScope, label: string): vscode.Task {
    const execution = new vscode.CustomExecution(async (resolved) => new TunnelTaskTerminal(this.s, label, resolved, (run) => this.runs.set(label, run)));
    const t = new vscode.Task(definition, scope, label, TASK_TYPE, execution, [`$${PROBLEM_MATCHER}`]);
    t.isBackground = true;
    t.presentationOptions = { reveal: vscode.TaskRevealKind.Silent, panel: vscode.TaskPanelKind.Dedicated };
    return t;
  }
}

class TunnelTaskTerminal implements vscode.Pseudoterminal {
  private readonly writeEmitter = new vscode.EventEmitter<string>();
  private readonly closeEmitter = new vscode.EventEmitter<number>();
  readonly onDidWrite = this.writeEmitter.event;
  readonly onDidClose = this.closeEmitter.event;
  private entry?: TunnelEntry;
  private started = false;
  /** The forward was listed (stopped) before and restarted by this run: give it back stopped, still listed. */
  private restarted = false;
  private closed = false;
  private watch?: vscode.Disposable;
  private current?: TaskRun;
  private settle: () => void = () => undefined;

  constructor(
    private readonly s: Services,
    private readonly label: string,
    private readonly definition: vscode.TaskDefinition,
    private readonly record: (run: TaskRun) => void,
  ) {}

  open(): void {
    void this.run();
  }

  close(): void {
    // The user (or VS Code) terminated the task.
    void this.finish(0, 'the task was terminated');
  }

  private line(text: string): void {
    this.writeEmitter.fire(`${text.replace(/\r?\n/g, '\r\n')}\r\n`);
  }

  private async run(): Promise<void> {
    const parsed = parseTaskDefinition(this.definition);
    const run: TaskRun = {
      label: this.label,
      definition: typeof parsed === 'string' ? { type: TASK_TYPE, queue: String(this.definition.queue), localPort: Number(this.definition.localPort) } : parsed,
      state: 'starting',
      settled: new Promise<void>((r) => (this.settle = r)),
    };
    this.record(run);
    this.current = run;
    const fail = (why: string): void => {
      run.state = 'failed';
      run.failure = why;
      this.line(TASK_LINES.failed(why));
      this.s.log.error(`task '${this.label}': ${why}`);
      this.settle();
      void this.finish(1, 'it failed');
    };
    if (typeof parsed === 'string') {
      this.line(TASK_LINES.starting(String(this.definition.queue), String(this.definition.broker ?? '(default)'), String(this.definition.localPort)));
      return fail(`task '${this.label}': ${parsed}`);
    }
    const local = `127.0.0.1:${parsed.localPort}`;
    let brokerName: string;
    try {
      brokerName = brokerFor(this.s, parsed.broker).name;
    } catch (err) {
      this.line(TASK_LINES.starting(parsed.queue, parsed.broker ?? '(none)', local));
      return fail((err as Error).message);
    }
    this.line(TASK_LINES.starting(parsed.queue, brokerName, local));
    try {
      const r = await ensureForward(this.s, { queue: parsed.queue, broker: brokerName, localPort: parsed.localPort });
      this.entry = r.entry;
      this.started = r.started;
      this.restarted = r.restarted ?? false;
    } catch (err) {
      return fail((err as Error).message);
    }
    if (this.closed) {
      // Terminated while starting: give back what this run started.
      if (this.started) await releaseForward(this.s, this.entry, `task '${this.label}' was terminated while starting`, this.restarted).catch(() => undefined);
      return;
    }
    run.state = 'ready';
    this.settle();
    this.line(TASK_LINES.ready(this.entry.localAddress, parsed.queue, this.entry.brokerAddress));
    if (!this.started) this.line(`(reusing the forward that was running already; it keeps running when this task ends)`);
    this.follow(this.entry);
  }

  /** Print the forward's state changes; end the task when the forward is stopped or removed elsewhere. */
  private follow(entry: TunnelEntry): void {
    let last = entry.state;
    this.watch = this.s.manager.onDidChange(() => {
      if (!this.s.manager.get(entry.id)) {
        this.line('the forward was removed from the Tunnels view; ending the task');
        void this.finish(0, 'the forward was removed');
        return;
      }
      const now = entry.state;
      if (now === last) return;
      last = now;
      if (now === 'reconnecting') this.line(`lost the broker; reconnecting (${entry.lastError ?? 'no details'})`);
      else if (now === 'ready') this.line('connected to the broker again');
      else if (now === 'stopped' || now === 'failed') {
        this.line(`the forward ${now === 'stopped' ? 'was stopped' : `failed: ${entry.lastError ?? ''}`}; ending the task`);
        void this.finish(now === 'failed' ? 1 : 0, `the forward ${now}`);
      }
    });
  }

  private async finish(code: number, why: string): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watch?.dispose();
    if (this.current && this.current.state !== 'failed') this.current.state = 'ended';
    this.settle();
    if (this.entry && this.started) await releaseForward(this.s, this.entry, `task '${this.label}' ended (${why})`, this.restarted).catch(() => undefined);
    this.closeEmitter.fire(code);
  }
}
