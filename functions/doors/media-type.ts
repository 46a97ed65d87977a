/**
 * Whether a `Content-Type` is `type`, with no parameter but an optional
 * `charset=utf-8` (the broker reads bodies as UTF-8 only). Media types and
 * charsets are case-insensitive, and a parameter's value may be quoted
 * (RFC 9110 §8.3.1: `charset="utf-8"` is `charset=utf-8`).
 */
export function isMediaType(contentType: string | undefined, type: string): boolean {
  if (contentType === type) return true; // what nearly every caller sends
  if (contentType === undefined) return false;
  const [given, ...params] = contentType.split(';').map((s) => s.trim().toLowerCase());
  if (given !== type) return false;
  return params.every((p) => !p.startsWith('charset=') || unquote(p.slice('charset='.length)) === 'utf-8');
}

function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

/** The bytes as UTF-8 text, without a byte order mark. */
export function utf8(raw: Buffer | undefined): string {
  if (raw === undefined) return '';
  const text = raw.toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
