/**
 * Email handling shared by the policy and request parsers. Emails are
 * compared in one canonical form: ASCII only, lower case, no surrounding
 * space and no trailing dot. ASCII is checked *before* lower-casing, because
 * `toLowerCase()` folds some non-ASCII lookalikes (U+212A KELVIN SIGN) into
 * ASCII letters.
 */

// A practical dot-atom local part: letters, digits and . _ ' + -. No `*`, so a request value is never a pattern.
const EMAIL =
  /^[a-z0-9'_+-]+(?:\.[a-z0-9'_+-]+)*@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

/** Returns the canonical (lower-case) form of an email, or undefined when it is not a plain ASCII email. */
export function canonicalEmail(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > 254) return undefined;
  if (!PRINTABLE_ASCII.test(value)) return undefined;
  const lower = value.toLowerCase();
  return EMAIL.test(lower) ? lower : undefined;
}

/** Returns the canonical form of a domain (the part after `@`), or undefined. */
export function canonicalDomain(value: string): string | undefined {
  const email = canonicalEmail(`x@${value}`);
  return email?.slice(2);
}
