/**
 * Brokers: names and password-free URLs in the `amqpTunnel.brokers` setting,
 * passwords in SecretStorage (never in settings, logs or the tree).
 */
import * as vscode from 'vscode';
import { CONFIG_SECTION, SETTINGS } from './ids';
import { brokerConnectUrl, parseBrokers, splitBrokerUrl, type BrokerEntry } from './model';

const secretKey = (name: string): string => `amqpTunnel.brokerPassword/${name}`;

export class Brokers {
  /** Every password read so far, so logs and messages can be scrubbed of them. */
  readonly knownSecrets = new Set<string>();

  constructor(private readonly secrets: vscode.SecretStorage) {}

  list(): BrokerEntry[] {
    return parseBrokers(vscode.workspace.getConfiguration(CONFIG_SECTION).get(SETTINGS.brokers)).brokers;
  }

  /** Problems with the brokers setting, for the log. */
  problems(): string[] {
    return parseBrokers(vscode.workspace.getConfiguration(CONFIG_SECTION).get(SETTINGS.brokers)).problems;
  }

  get(name: string): BrokerEntry | undefined {
    return this.list().find((b) => b.name === name);
  }

  /** Add a broker; a password in `url` goes to SecretStorage, the setting keeps the URL without it. */
  async add(name: string, url: string, password?: string): Promise<BrokerEntry> {
    const split = splitBrokerUrl(url);
    const entry = { name: name.trim(), url: split.url };
    const pw = password || split.password;
    const { target, value } = this.current();
    await vscode.workspace.getConfiguration(CONFIG_SECTION).update(SETTINGS.brokers, [...value.filter((b) => b.name !== entry.name), entry], target);
    if (pw) await this.setPassword(entry.name, pw);
    return entry;
  }

  async remove(name: string): Promise<void> {
    const { target, value } = this.current();
    await vscode.workspace.getConfiguration(CONFIG_SECTION).update(
      SETTINGS.brokers,
      value.filter((b) => b.name !== name),
      target,
    );
    await this.secrets.delete(secretKey(name));
  }

  async setPassword(name: string, password: string): Promise<void> {
    this.knownSecrets.add(password);
    if (password === '') await this.secrets.delete(secretKey(name));
    else await this.secrets.store(secretKey(name), password);
  }

  async hasPassword(name: string): Promise<boolean> {
    return (await this.secrets.get(secretKey(name))) !== undefined;
  }

  /** The URL to connect with (password included): never show or log it. */
  async connectUrl(name: string): Promise<string> {
    const b = this.get(name);
    if (!b) throw new Error(`no broker named '${name}' is configured; add it with "AMQP Tunnel: Add Broker"`);
    const pw = await this.secrets.get(secretKey(name));
    if (pw) this.knownSecrets.add(pw);
    return brokerConnectUrl(b.url, pw);
  }

  /** Where the brokers list lives now (workspace if it is set there, else user settings) and its value there. */
  private current(): { target: vscode.ConfigurationTarget; value: BrokerEntry[] } {
    const info = vscode.workspace.getConfiguration(CONFIG_SECTION).inspect<unknown>(SETTINGS.brokers);
    if (info?.workspaceValue !== undefined) {
      return { target: vscode.ConfigurationTarget.Workspace, value: parseBrokers(info.workspaceValue).brokers };
    }
    return { target: vscode.ConfigurationTarget.Global, value: parseBrokers(info?.globalValue).brokers };
  }
}
