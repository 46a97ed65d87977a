/**
 * The rules both sides of the wire apply, in one place: what a tenant id and
 * a scope may be, which URLs may carry a caller's credential, and the
 * audience a token exchange names its account with. No imports.
 */

/** The kinds of token the broker mints, one per JSON endpoint. */
export const TOKEN_KINDS = ['token', 'jwt', 'idtoken'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** A tenant id: 1–63 lower-case letters, digits, `-` and `_`, starting with a letter or digit. */
export const TENANT_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** One OAuth scope: printable ASCII with no whitespace and no comma (either would smuggle in a second scope). */
export const SCOPE = /^[\x21-\x2b\x2d-\x7e]{1,512}$/;

/** Who a token is for: a service account by email, or a tenant by id; never both. */
export type AccountRef =
  | { serviceAccount: string; tenant?: never }
  | { tenant: string; serviceAccount?: never };

const LOOPBACK = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

/**
 * What is wrong with a URL that a credential travels to: it must be
 * `https:`, or `http:` on a loopback host (127.0.0.0/8, ::1, localhost), and
 * carry no user info. Undefined when it is fine.
 */
export function urlProblem(value: string): string | undefined {
  if (!URL.canParse(value)) return `${JSON.stringify(value.slice(0, 200))} is not a URL`;
  const u = new URL(value);
  if (u.username !== '' || u.password !== '') return 'must not carry credentials';
  if (u.protocol === 'https:') return undefined;
  if (u.protocol === 'http:' && LOOPBACK.test(u.hostname)) return undefined;
  return `must be https (http only on 127.0.0.0/8, ::1 or localhost), got ${u.protocol}//${u.host}`;
}

/** Prefix of a token-exchange audience. */
export const STS_AUDIENCE_PREFIX = '//token-broker/';

/**
 * The audience a token exchange (and the credential file that drives it)
 * names its account with: `//token-broker/serviceAccounts/EMAIL` or
 * `//token-broker/tenants/ID`, then optionally `/subjects/USER_EMAIL`.
 */
export function stsAudience(account: AccountRef, subject?: string): string {
  const base =
    account.serviceAccount !== undefined
      ? `${STS_AUDIENCE_PREFIX}serviceAccounts/${account.serviceAccount}`
      : `${STS_AUDIENCE_PREFIX}tenants/${account.tenant}`;
  return subject === undefined ? base : `${base}/subjects/${subject}`;
}

const STS_AUDIENCE =
  /^\/\/token-broker\/(serviceAccounts|tenants)\/([^/\s]{1,254})(?:\/subjects\/([^/\s]{1,254}))?$/;

/** The account (and subject) a token-exchange audience names; undefined when it is not one. */
export function parseStsAudience(
  audience: string,
): { account: AccountRef; subject: string | undefined } | undefined {
  const m = STS_AUDIENCE.exec(audience);
  if (m === null) return undefined;
  const [, kind, name, subject] = m as unknown as [string, string, string, string | undefined];
  return {
    account: kind === 'serviceAccounts' ? { serviceAccount: name } : { tenant: name },
    subject,
  };
}
