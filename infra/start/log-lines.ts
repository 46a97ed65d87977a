/**
 * One short line for each of the broker's JSON log lines, as `npm start`
 * streams them once the demo is done: a request's status, door, operation,
 * caller, target, decision and reason; any other line's severity and message.
 */

interface LogLine {
  severity?: string;
  message?: string;
  time?: string;
  httpRequest?: { status?: number; requestMethod?: string; requestUrl?: string; latency?: string };
  'logging.googleapis.com/labels'?: { door?: string };
  audit?: {
    operation?: string;
    caller?: string;
    serviceAccount?: string;
    tenant?: string;
    subject?: string;
    scopes?: string[];
    audience?: string;
    decision?: string;
    reason?: string;
    cache?: string;
    error?: string;
  };
}

const SCOPE_PREFIX = 'https://www.googleapis.com/auth/';

/** The short form of one log line; the line itself when it is not JSON. */
export function compactLogLine(text: string): string {
  let line: LogLine;
  try {
    line = JSON.parse(text) as LogLine;
  } catch {
    return text;
  }
  if (typeof line !== 'object' || line === null) return text;
  const time = typeof line.time === 'string' ? line.time.slice(11, 19) : '';
  const http = line.httpRequest;
  if (http === undefined) return `${time} ${line.severity ?? 'DEFAULT'} ${line.message ?? ''}`.trim();
  const a = line.audit ?? {};
  const target = a.serviceAccount ?? (a.tenant === undefined ? undefined : `tenant:${a.tenant}`);
  const parts = [
    time,
    String(http.status ?? '-'),
    `${http.requestMethod ?? ''} ${http.requestUrl ?? ''}`.trim(),
    a.operation,
    a.caller ?? '(caller not verified)',
    target === undefined ? undefined : `→ ${target}`,
    a.subject === undefined ? undefined : `as ${a.subject}`,
    a.scopes === undefined ? undefined : `[${a.scopes.map((s) => s.replace(SCOPE_PREFIX, '')).join(' ')}]`,
    a.audience === undefined ? undefined : `aud ${a.audience}`,
    a.decision,
    a.reason ?? a.error,
    a.cache === undefined ? undefined : `cache ${a.cache}`,
  ];
  return parts.filter((p) => p !== undefined && p !== '').join(' ');
}
