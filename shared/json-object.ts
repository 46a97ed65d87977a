/** Parses text as a JSON object; undefined for invalid JSON, arrays and other values. */
export function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The `exp` claim of a compact JWT in epoch seconds, read without verifying it (for a JWT that came from Google over TLS). */
export function unverifiedExpiry(jwt: string): number | undefined {
  const claims = parseJsonObject(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8'));
  const exp = claims?.['exp'];
  return typeof exp === 'number' && Number.isFinite(exp) ? exp : undefined;
}
