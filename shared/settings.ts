/**
 * Every environment variable the broker reads, one row each: its default,
 * its range and what it means. The loader (`config.ts`) takes defaults and
 * ranges from here, components take their defaults from here, and
 * docs/configuration.md's table is rendered from it (`npm run docs:config`;
 * a test keeps the doc in step).
 */

interface Base {
  /** What it does, for the doc (Markdown). */
  readonly meaning: string;
}

/** An integer within [min, max]. */
export interface IntSetting extends Base {
  readonly kind: 'int';
  readonly default: number;
  readonly min: number;
  readonly max: number;
}

/** A URL: `https:`, or `http:` on loopback. */
export interface UrlSetting extends Base {
  readonly kind: 'url';
  readonly default: string;
}

/** Anything else: the doc says its default and range in words. */
export interface TextSetting<D extends string | undefined = string | undefined> extends Base {
  readonly kind: 'text';
  readonly default: D;
  readonly defaultText: string;
  readonly range: string;
}

export type Setting = IntSetting | UrlSetting | TextSetting;

const int = (d: number, min: number, max: number, meaning: string): IntSetting => ({
  kind: 'int',
  default: d,
  min,
  max,
  meaning,
});
const url = (d: string, meaning: string): UrlSetting => ({ kind: 'url', default: d, meaning });
const text = <D extends string | undefined>(
  d: D,
  defaultText: string,
  range: string,
  meaning: string,
): TextSetting<D> => ({
  kind: 'text',
  default: d,
  defaultText,
  range,
  meaning,
});

/** The table, in the doc's order. */
export const SETTINGS = {
  BROKER_POLICY: text(
    undefined,
    'unset (exactly one of this and `BROKER_POLICY_FILE` is required)',
    'a JSON document',
    'the policy itself, as JSON text. `file:` keys are relative to the working directory. See [contract.md](contract.md#policy)',
  ),
  BROKER_POLICY_FILE: text(
    undefined,
    'unset (exactly one of this and `BROKER_POLICY` is required)',
    'a readable file path',
    "a path to the policy's JSON, relative to the working directory. `file:` keys are relative to this file's directory",
  ),
  BROKER_POLICY_REFRESH_SECONDS: int(
    60,
    0,
    3600,
    'with `BROKER_POLICY_FILE`: how often the file is read again (0: never). A new, valid version takes effect on every instance within this time, with no deploy; one that does not validate is logged and ignored. On Cloud Functions the file is a Secret Manager volume (Terraform\'s `policy_delivery = "secret"`, at `/etc/secrets/token-broker/policy.json`), where every read fetches the newest version and is one billed access',
  ),
  BROKER_AUDIENCE: text(
    undefined,
    '— (required)',
    'any non-empty string',
    "the `aud` that callers' ID tokens must carry; usually the function's URL",
  ),
  BROKER_JWKS_URL: url(
    'https://www.googleapis.com/oauth2/v3/certs',
    "where the keys that sign callers' ID tokens are published",
  ),
  BROKER_ISSUERS: text(
    'https://accounts.google.com,accounts.google.com',
    '`https://accounts.google.com,accounts.google.com`',
    'comma-separated, at least one',
    "the accepted `iss` values of callers' ID tokens",
  ),
  BROKER_TOKEN_URL: url(
    'https://oauth2.googleapis.com/token',
    "Google's token endpoint; also the `aud` of every assertion",
  ),
  BROKER_IAM_CREDENTIALS_URL: url(
    'https://iamcredentials.googleapis.com',
    'the base URL of the IAM Service Account Credentials API, used for keyless accounts',
  ),
  BROKER_STS_URL: url(
    'https://sts.googleapis.com/v1/token',
    "Google's Security Token Service, which bounds a shared account's token to one tenant's data (Credential Access Boundaries; see [contract.md](contract.md#tenants-on-shared-accounts))",
  ),
  GCE_METADATA_HOST: text(
    'metadata.google.internal',
    '`metadata.google.internal`',
    '`host` or `host:port`',
    "the metadata server that gives the broker its own access token, used for keyless accounts. The same variable Google's libraries honour",
  ),
  UPSTASH_REDIS_REST_URL: text(
    undefined,
    'unset: no shared cache, each instance caches in its own memory',
    'URL; set together with `UPSTASH_REDIS_REST_TOKEN`',
    'the REST URL of the Upstash Redis database used as the shared cache (L2)',
  ),
  UPSTASH_REDIS_REST_TOKEN: text(
    undefined,
    'unset',
    'set together with `UPSTASH_REDIS_REST_URL`',
    'the bearer token of that database',
  ),
  BROKER_CACHE_KEY: text(
    undefined,
    '— (required with a shared cache)',
    'exactly 32 bytes, base64 (`openssl rand -base64 32`)',
    'encrypts cached tokens and keys the names of cache entries. Changing it empties the shared cache',
  ),
  BROKER_REFRESH_SKEW_SECONDS: int(
    300,
    0,
    3300,
    'a cached token with less life left than this is re-minted, never served (except stale-if-error; see [contract.md](contract.md#cache-semantics))',
  ),
  BROKER_REFRESH_AHEAD_SECONDS: int(
    300,
    0,
    3000,
    'a hit with less than skew + this much life left is served and re-minted in the background',
  ),
  BROKER_PURGE_BOUND_SECONDS: int(
    30,
    2,
    30,
    'with a shared cache: the longest an instance serves a token from memory past its last successful check against the shared cache. While the shared cache cannot be read, a token past it is minted afresh, so a purge reaches every instance within this many seconds. See [contract.md](contract.md#purge)',
  ),
  BROKER_CACHE_TIMEOUT_MS: int(
    250,
    10,
    10_000,
    'the budget of one shared-cache call; past it the request goes on without the cache',
  ),
  BROKER_KEY_TTL_SECONDS: int(
    600,
    1,
    86_400,
    'how long a key read from Secret Manager is used before the secret is read again',
  ),
  BROKER_L1_MAX_ENTRIES: int(10_000, 1, 1_000_000, 'the bound of the in-process token cache'),
  BROKER_CLOCK_TOLERANCE_SECONDS: int(30, 0, 300, "tolerance on callers' `exp` and `iat`"),
  BROKER_ALLOW_SIGNATURE_REMOVED_BY_GOOGLE: text(
    'false',
    '`false`',
    '`true`, `false`, `1`, `0`',
    'accept a caller token whose signature Cloud Run replaced with `SIGNATURE_REMOVED_BY_GOOGLE`, only when the request has no `X-Serverless-Authorization` header (never for token exchange). Leave it off unless invoker IAM guards every path to the broker; see [contract.md](contract.md#cloud-runs-invoker-check-and-signature_removed_by_google)',
  ),
  BROKER_ALLOW_LOOPBACK_ISSUERS: text(
    'false',
    '`false`',
    '`true`, `false`, `1`, `0`',
    "let the policy's `issuers` (and their discovery documents' `jwks_uri`) be `http:` on a loopback host, for tests and `npm start`. Off, every issuer and key set is `https:`. See [contract.md](contract.md#trusted-issuers)",
  ),
  SECRET_MANAGER_EMULATOR_HOST: text(
    undefined,
    'unset: the real Secret Manager',
    '`host:port`',
    'a plaintext gRPC Secret Manager, for local runs and tests',
  ),
  GOOGLE_CLOUD_PROJECT: text(
    undefined,
    'unset',
    'a project id',
    "the project that log lines' `logging.googleapis.com/trace` names; without it the trace id is logged as a plain field",
  ),
  GCP_PROJECT: text(
    undefined,
    'unset',
    'a project id',
    'the older name of `GOOGLE_CLOUD_PROJECT`, read when that one is unset',
  ),
} as const satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;

/** The integer settings' names. */
export type IntSettingName = {
  [K in SettingName]: (typeof SETTINGS)[K] extends IntSetting ? K : never;
}[SettingName];

/** The URL settings' names. */
export type UrlSettingName = {
  [K in SettingName]: (typeof SETTINGS)[K] extends UrlSetting ? K : never;
}[SettingName];
