/**
 * The prompts every command shares: pick a tunnel, pick a broker, and ask
 * for a value (or take the one given as an argument) and check it.
 */
import * as vscode from 'vscode';
import type { BrokerEntry } from './model';
import type { TunnelEntry } from './manager';

/**
 * The value given as an argument, or the one typed into an input box that
 * checks it as it is typed; either way checked once more, and a problem is
 * one error notification. Undefined when cancelled or wrong.
 */
export async function askChecked(
  given: string | undefined,
  problem: (value: string) => string | undefined,
  box: Omit<vscode.InputBoxOptions, 'validateInput'>,
): Promise<string | undefined> {
  const value = given ?? (await vscode.window.showInputBox({ ignoreFocusOut: true, ...box, validateInput: problem }));
  if (value === undefined) return undefined;
  const p = problem(value);
  if (p) {
    void vscode.window.showErrorMessage(p);
    return undefined;
  }
  return value;
}

/** One of `entries`: the only one without asking, else the one picked (undefined when none or cancelled). */
export async function pickTunnel(entries: TunnelEntry[], placeHolder: string, title?: string): Promise<TunnelEntry | undefined> {
  if (entries.length <= 1) return entries[0];
  const pick = await vscode.window.showQuickPick(
    entries.map((e) => ({ label: e.spec.queue, description: `${e.spec.kind} · ${e.localAddress} · ${e.state} · ${e.spec.broker}`, entry: e })),
    { title, placeHolder, ignoreFocusOut: true },
  );
  return pick?.entry;
}

/**
 * A broker's name: with none configured, what `none` gives (an offer to add
 * one); with one, that one (unless `askWhenOne`); else the one picked.
 */
export async function pickBroker(
  brokers: BrokerEntry[],
  title: string,
  none: () => Promise<string | undefined>,
  askWhenOne = false,
): Promise<string | undefined> {
  if (brokers.length === 0) return none();
  if (brokers.length === 1 && !askWhenOne) return brokers[0].name;
  const pick = await vscode.window.showQuickPick(
    brokers.map((b) => ({ label: b.name, description: b.url })),
    { title, placeHolder: 'Which broker?', ignoreFocusOut: true },
  );
  return pick?.label;
}
