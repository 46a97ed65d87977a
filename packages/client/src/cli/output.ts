/**
 * What the CLI prints for a token, as gcloud's `--format` chooses it: the
 * bare token (the default), `json`, or `value(FIELD,...)` (tab-separated,
 * one line), over one set of fields.
 */
import type { BrokerToken } from '../broker-client.js';

/** The fields `--format json` prints and `value(...)` picks from. */
export const FIELDS = ['token', 'expires_at', 'expires_in', 'expiry', 'scope', 'cache_status'] as const;
type Field = (typeof FIELDS)[number];

/** How to print a token. */
export type OutputFormat = { kind: 'token' } | { kind: 'json' } | { kind: 'value'; fields: Field[] };

/**
 * Reads `--format`: `json`, `text` (the bare token), or `value(F1,F2)`.
 * Returns a problem in words instead of a format when it is none of those.
 */
export function parseFormat(text: string): OutputFormat | string {
  if (text === 'json') return { kind: 'json' };
  if (text === 'text') return { kind: 'token' };
  const m = /^value\(([^()]*)\)$/.exec(text.trim());
  if (m === null) return `--format takes json, text or value(FIELD,...); got ${JSON.stringify(text)}`;
  const fields = m[1]!.split(',').map((f) => f.trim());
  const unknown = fields.filter((f) => !(FIELDS as readonly string[]).includes(f));
  if (fields.length === 0 || unknown.length > 0)
    return `--format value(...) takes fields among ${FIELDS.join(', ')}; got ${JSON.stringify(unknown.join(',') || text)}`;
  return { kind: 'value', fields: fields as Field[] };
}

/** The token's fields, as `--format json` prints them; `now` in epoch milliseconds. */
function fieldsOf(t: BrokerToken, now: number): Record<Field, string | number | null> {
  return {
    token: t.token,
    expires_at: Math.floor(t.expiresAt / 1000),
    expires_in: Math.max(0, Math.floor((t.expiresAt - now) / 1000)),
    expiry: new Date(Math.floor(t.expiresAt / 1000) * 1000).toISOString(),
    scope: t.scope ?? null,
    cache_status: t.cacheStatus,
  };
}

/** The text the CLI prints for `t` (no trailing newline). */
export function render(t: BrokerToken, format: OutputFormat, now: number): string {
  if (format.kind === 'token') return t.token;
  const all = fieldsOf(t, now);
  if (format.kind === 'json') return JSON.stringify(all);
  return format.fields.map((f) => String(all[f] ?? '')).join('\t');
}
