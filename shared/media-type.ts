/**
 * Whether a `Content-Type` is `type`, with no parameter but an optional
 * `charset=utf-8` (the broker reads bodies as UTF-8 only).
 */
export function isMediaType(contentType: string | undefined, type: string): boolean {
  if (contentType === type) return true; // what nearly every caller sends
  if (contentType === undefined) return false;
  const [given, ...params] = contentType.split(';').map((s) => s.trim().toLowerCase());
  if (given !== type) return false;
  return params.every((p) => !p.startsWith('charset=') || p === 'charset=utf-8');
}
