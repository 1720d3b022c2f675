/**
 * Turns what amqplib and Node's net/tls throw into TunnelErrors whose
 * messages say what went wrong in the user's terms and what to do. Inputs
 * may contain the broker URL; outputs only ever contain the scrubbed one.
 */
import { TunnelError } from '../common/errors';
import type { StreamUrl } from './url';
import { redactUrl } from './url';

interface ErrLike {
  code?: unknown;
  message?: unknown;
}

function text(err: unknown): string {
  const msg = (err as ErrLike | undefined)?.message;
  return redactUrl(typeof msg === 'string' ? msg : String(err));
}

/** AMQP reply code carried by an amqplib channel or connection error, if any. */
export function amqpCode(err: unknown): number | undefined {
  const code = (err as ErrLike | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** Map a failure to open the broker connection. */
export function brokerConnectError(err: unknown, url: StreamUrl): TunnelError {
  if (err instanceof TunnelError) return err;
  const where = `${url.host}:${url.port}`;
  const code = (err as ErrLike | undefined)?.code;
  const msg = text(err);
  if (code === 'ECONNREFUSED') {
    return new TunnelError(
      'ECONNREFUSED',
      `cannot reach the broker at ${where}: connection refused — is RabbitMQ running there and is the port right?`,
      { cause: err },
    );
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new TunnelError('ENOTFOUND', `cannot resolve the broker host '${url.host}' (DNS) — check the host name in the broker URL`, {
      cause: err,
    });
  }
  if (code === 'ETIMEDOUT' || /ETIMEDOUT/.test(msg)) {
    return new TunnelError('ETIMEDOUT', `the broker at ${where} did not answer in time — check the host, port and firewall`, {
      cause: err,
    });
  }
  if (
    typeof code === 'string' &&
    (code.startsWith('ERR_TLS') ||
      code.startsWith('ERR_SSL') ||
      code.includes('CERT') ||
      code === 'EPROTO' ||
      code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
  ) {
    return new TunnelError('ERR_AMQP_TLS', tlsProblem(code, msg, where), { cause: err });
  }
  if (/ACCESS.REFUSED/i.test(msg) && /mechanism EXTERNAL/i.test(msg)) {
    return new TunnelError(
      'ERR_AMQP_AUTH',
      `the broker at ${where} refused the certificate login (SASL EXTERNAL): it has no user named after the certificate's common name — ask the broker admin to create that user, or use a certificate issued for an existing one`,
      { cause: err },
    );
  }
  if (/ACCESS.REFUSED/i.test(msg) && /login/i.test(msg)) {
    return new TunnelError(
      'ERR_AMQP_AUTH',
      `the broker at ${where} refused the login of user '${url.username || 'guest'}' — check the user name and password`,
      { cause: err },
    );
  }
  if (/ACCESS.REFUSED/i.test(msg) && /vhost/i.test(msg)) {
    return new TunnelError(
      'ERR_AMQP_ACCESS',
      `user '${url.username || 'guest'}' may not use vhost '${url.vhost}' on ${where} — ask the broker admin for permissions`,
      { cause: err },
    );
  }
  if (/NOT.ALLOWED/i.test(msg) && /vhost/i.test(msg)) {
    return new TunnelError('ERR_AMQP_VHOST', `the vhost '${url.vhost}' does not exist on the broker at ${where} — check the path of the broker URL`, {
      cause: err,
    });
  }
  if (/Expected ConnectionOpenOk; got <ConnectionClose/.test(msg)) {
    // RabbitMQ answers connection.open with 530 NOT_ALLOWED both for a missing
    // vhost and for a user without access to it; amqplib does not pass the text on.
    return new TunnelError(
      'ERR_AMQP_VHOST',
      `the broker at ${where} refused to open vhost '${url.vhost}': the vhost does not exist or user '${url.username || 'guest'}' has no access to it — check the path of the broker URL and the user's permissions`,
      { cause: err },
    );
  }
  if (/Socket closed abruptly during opening handshake/i.test(msg)) {
    return new TunnelError(
      'ERR_AMQP_BROKER',
      `the server at ${where} closed the connection during the AMQP handshake — is it an AMQP broker, and does it expect ${url.protocol === 'amqp:' ? 'amqps://' : 'amqp://'}?`,
      { cause: err },
    );
  }
  return new TunnelError('ERR_AMQP_BROKER', `could not connect to the broker at ${where}: ${msg}`, { cause: err });
}

/**
 * The broker connection is gone: say so, and why — no heartbeat (the network
 * or the broker stopped answering), the broker closed it (an operator's
 * close_connection, a shutdown: CONNECTION_FORCED), or the TCP connection
 * was reset or closed under it.
 */
export function brokerLostError(cause: unknown, url: StreamUrl, heartbeatSeconds: number): TunnelError {
  const lost = `lost the connection to the broker at ${url.safeUrl}`;
  if (cause === undefined || cause === null) return new TunnelError('ECONNRESET', `${lost}: it closed without giving a reason`);
  const msg = text(cause);
  const code = (cause as ErrLike).code;
  const amqp = amqpCode(cause);
  let why: string;
  if (/Heartbeat timeout/i.test(msg)) {
    why = `no heartbeat from the broker for ${2 * heartbeatSeconds} s — the network or the broker stopped answering`;
  } else if (amqp !== undefined) {
    // amqplib: 'Connection closed: 320 (CONNECTION-FORCED) with message "CONNECTION_FORCED - reason"'
    const m = /\d+ \(([A-Z-]+)\) with message "(.*)"/s.exec(msg);
    const name = (m?.[1] ?? String(amqp)).replace(/-/g, '_');
    const said = (m?.[2] ?? msg).replace(new RegExp(`^${name} - `), '');
    why =
      amqp === 320
        ? `the broker closed the connection (${name}): ${said} — an operator or a broker shutdown closed it`
        : `the broker closed the connection (${name}): ${said}`;
  } else if (code === 'ECONNRESET' || /ECONNRESET/.test(msg)) {
    why = 'the network connection was reset (ECONNRESET)';
  } else if (code === 'EPIPE' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    why = `the network connection failed (${String(code)})`;
  } else if (/Unexpected close/i.test(msg)) {
    why = 'the network connection closed without an AMQP close (the broker or something in between went away)';
  } else {
    why = msg;
  }
  return new TunnelError('ECONNRESET', `${lost}: ${why}`, { cause });
}

/** Map a channel-level failure of an operation on `queue`. */
export function channelError(err: unknown, url: StreamUrl, queue: string, what: string): TunnelError {
  if (err instanceof TunnelError) return err;
  const code = amqpCode(err);
  const msg = text(err);
  if (code === 405) {
    return new TunnelError(
      'EADDRINUSE',
      `queue '${queue}' at ${url.safeUrl} is already in use by another connection — stop the other publisher or choose another queue name`,
      { cause: err },
    );
  }
  if (code === 403) {
    return new TunnelError('ERR_AMQP_ACCESS', `the broker refused to ${what} queue '${queue}': ${msg} — check the user's permissions on vhost '${url.vhost}'`, {
      cause: err,
    });
  }
  if (code === 404) {
    return new TunnelError('ECONNRESET', `queue '${queue}' no longer exists at ${url.safeUrl}`, { cause: err });
  }
  return new TunnelError('ERR_AMQP_BROKER', `could not ${what} queue '${queue}' at ${url.safeUrl}: ${msg}`, { cause: err });
}

/** A TLS failure in words: OpenSSL's text is reduced to its reason. */
function tlsProblem(code: string, msg: string, where: string): string {
  const reason = /SSL routines:[^:]*:([^:\n]+)/.exec(msg)?.[1]?.trim() ?? msg.split('\n')[0]!.trim();
  if (/wrong version number|packet length too long|unknown protocol|http request/i.test(reason)) {
    return `the server at ${where} does not speak TLS on that port — use amqp:// for a plain port, or the broker's TLS port (usually 5671) with amqps://`;
  }
  if (/protocol version|unsupported protocol|no protocols available/i.test(reason)) {
    return `the broker at ${where} and this client share no TLS version (${reason}) — lower the minimum (--tls-min / the 'minVersion' option) or enable a newer TLS version on the broker`;
  }
  // Alerts the broker sent about OUR certificate (mutual TLS / SASL EXTERNAL): blame the client's certificate.
  if (/ALERT_CERTIFICATE_EXPIRED/.test(code)) {
    return `the broker at ${where} refused this client's TLS certificate: it has expired — renew the certificate given with --cert (the 'cert' option)`;
  }
  if (/ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|UNSUPPORTED_CERTIFICATE|DECRYPT_ERROR)/.test(code)) {
    return `the broker at ${where} refused this client's TLS certificate (${reason}) — it must be signed by a CA the broker trusts (its ssl_options.cacertfile)`;
  }
  if (/ALERT_CERTIFICATE_REQUIRED/.test(code)) {
    return `the broker at ${where} requires a client certificate — give --cert and --key (the 'cert' and 'key' options)`;
  }
  // Problems with the BROKER's certificate, found by this client.
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the broker's TLS certificate at ${where} is issued for another host name (${reason.replace(/:\s*$/, '')}) — connect with a host name the certificate names`;
  }
  if (code === 'CERT_HAS_EXPIRED') {
    return `the broker's TLS certificate at ${where} has expired — the broker's administrator must renew it`;
  }
  if (code.includes('CERT') || /certificate/i.test(reason) || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE') {
    return `the broker's TLS certificate at ${where} is not trusted (${reason}) — pass the CA that signed it (--ca FILE / the 'ca' option), or check the host name`;
  }
  return `TLS with the broker at ${where} failed (${reason}) — check the CA, the client certificate and key, and the minimum TLS version`;
}
