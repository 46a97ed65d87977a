import { dirname, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { urlProblem as checkUrl } from '../../packages/wire/rules.js';
import { type Env, loadConfig } from '../../shared/config.js';
import { ConfigError } from '../../shared/errors.js';

const POLICY = {
  serviceAccounts: [
    { email: 'sa@p.iam.gserviceaccount.com', key: 'projects/p/secrets/sa-key/versions/latest' },
  ],
  grants: [
    {
      callers: ['c@p.iam.gserviceaccount.com'],
      serviceAccounts: ['sa@p.iam.gserviceaccount.com'],
      scopes: ['s'],
    },
  ],
  admins: [],
};
const files: Record<string, string> = { '/etc/broker/policy.json': JSON.stringify(POLICY) };
const io = {
  readFile: (p: string) => {
    const f = files[p];
    if (f === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' });
    return f;
  },
  cwd: '/srv',
  dirname,
  resolve,
};
const base: Env = { BROKER_POLICY: JSON.stringify(POLICY), BROKER_AUDIENCE: 'https://broker.example.com' };

function problems(env: Env): readonly string[] {
  try {
    loadConfig(env, io);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('applies the contract defaults', () => {
    const c = loadConfig(base, io);
    expect(c).toMatchObject({
      audience: 'https://broker.example.com',
      jwksUrl: 'https://www.googleapis.com/oauth2/v3/certs',
      issuers: ['https://accounts.google.com', 'accounts.google.com'],
      tokenUrl: 'https://oauth2.googleapis.com/token',
      refreshSkewSeconds: 300,
      upstash: undefined,
      allowSignatureRemovedByGoogle: false,
      keyBaseDir: '/srv',
    });
  });

  it('reads the metadata server and the IAM Credentials API for keyless accounts, with the same URL rules', () => {
    expect(loadConfig(base, io)).toMatchObject({
      metadataHost: 'metadata.google.internal',
      iamCredentialsUrl: 'https://iamcredentials.googleapis.com',
    });
    expect(
      loadConfig(
        { ...base, GCE_METADATA_HOST: '127.0.0.1:8080', BROKER_IAM_CREDENTIALS_URL: 'http://127.0.0.1:9' },
        io,
      ),
    ).toMatchObject({ metadataHost: '127.0.0.1:8080', iamCredentialsUrl: 'http://127.0.0.1:9' });
    expect(
      problems({
        ...base,
        GCE_METADATA_HOST: 'http://evil.example/x',
        BROKER_IAM_CREDENTIALS_URL: 'http://iam.example',
      }),
    ).toEqual([
      'GCE_METADATA_HOST must be a host name, optionally with :port (e.g. 127.0.0.1:8080)',
      'BROKER_IAM_CREDENTIALS_URL: must be https (http only on 127.0.0.0/8, ::1 or localhost), got http://iam.example',
    ]);
  });

  it('reads the policy from a file and resolves file: keys beside it', () => {
    const c = loadConfig({ BROKER_POLICY_FILE: '/etc/broker/policy.json', BROKER_AUDIENCE: 'x' }, io);
    expect(c.keyBaseDir).toBe('/etc/broker');
  });

  it('lists every problem at once', () => {
    const p = problems({
      BROKER_JWKS_URL: 'http://evil.example.com/certs',
      BROKER_TOKEN_URL: 'not a url',
      BROKER_REFRESH_SKEW_SECONDS: '-5',
      UPSTASH_REDIS_REST_URL: 'https://u.example.com',
      BROKER_ALLOW_SIGNATURE_REMOVED_BY_GOOGLE: 'yes',
      SECRET_MANAGER_EMULATOR_HOST: 'localhost',
    });
    expect(p).toEqual([
      'one of BROKER_POLICY (the policy as JSON) or BROKER_POLICY_FILE (a path to it) is required',
      'BROKER_AUDIENCE is required: the `aud` that caller ID tokens must carry',
      'BROKER_JWKS_URL: must be https (http only on 127.0.0.0/8, ::1 or localhost), got http://evil.example.com',
      'BROKER_TOKEN_URL: "not a url" is not a URL',
      'set both UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN, or neither',
      'SECRET_MANAGER_EMULATOR_HOST must be host:port',
      'BROKER_REFRESH_SKEW_SECONDS must be an integer from 0 to 3300, got "-5"',
      'BROKER_ALLOW_SIGNATURE_REMOVED_BY_GOOGLE must be "true" or "false"',
    ]);
  });

  it('requires a 32-byte cache key with a shared cache', () => {
    const shared = {
      ...base,
      UPSTASH_REDIS_REST_URL: 'https://u.example.com',
      UPSTASH_REDIS_REST_TOKEN: 't',
    };
    expect(problems(shared)).toEqual([
      'BROKER_CACHE_KEY is required with a shared cache (e.g. `openssl rand -base64 32`)',
    ]);
    expect(problems({ ...shared, BROKER_CACHE_KEY: Buffer.alloc(16).toString('base64') })[0]).toMatch(
      /32 random bytes/,
    );
    const key = Buffer.alloc(32, 7).toString('base64');
    expect(loadConfig({ ...shared, BROKER_CACHE_KEY: key }, io).cacheKey).toEqual(new Uint8Array(32).fill(7));
  });

  it('refuses both policy sources, and reports policy problems with their source', () => {
    expect(problems({ ...base, BROKER_POLICY_FILE: '/etc/broker/policy.json' })).toEqual([
      'set only one of BROKER_POLICY and BROKER_POLICY_FILE',
    ]);
    expect(problems({ ...base, BROKER_POLICY: '{' })[0]).toMatch(/^BROKER_POLICY: not valid JSON/);
    expect(problems({ BROKER_POLICY_FILE: 'missing.json', BROKER_AUDIENCE: 'x' })).toEqual([
      'BROKER_POLICY_FILE: cannot read /srv/missing.json (ENOENT)',
    ]);
    const bad = problems({ ...base, BROKER_POLICY: JSON.stringify({ ...POLICY, admins: ['not an email'] }) });
    expect(bad.length).toBeGreaterThan(0);
    expect(bad.every((p) => p.startsWith('BROKER_POLICY: '))).toBe(true);
  });
});

describe("loadConfig and the policy's issuers", () => {
  const withIssuer = (issuer: string) =>
    JSON.stringify({
      ...POLICY,
      issuers: [{ name: 'ci', issuer, audiences: ['https://broker.example.com'] }],
    });

  it('takes a loopback http issuer only with BROKER_ALLOW_LOOPBACK_ISSUERS', () => {
    const env = { ...base, BROKER_POLICY: withIssuer('http://127.0.0.1:9000') };
    expect(problems(env)).toEqual([
      'BROKER_POLICY: issuers[0].issuer: must be https (http on a loopback host only with BROKER_ALLOW_LOOPBACK_ISSUERS=true)',
    ]);
    const c = loadConfig({ ...env, BROKER_ALLOW_LOOPBACK_ISSUERS: 'true' }, io);
    expect(c.allowLoopbackIssuers).toBe(true);
    expect(c.policy.issuers.map((i) => i.issuer)).toEqual(['http://127.0.0.1:9000']);
    expect(loadConfig(base, io).allowLoopbackIssuers).toBe(false);
  });

  it("refuses a policy issuer that is one of BROKER_ISSUERS: Google's callers keep their email", () => {
    expect(
      problems({
        ...base,
        BROKER_POLICY: withIssuer('https://issuer.example.com'),
        BROKER_ISSUERS: 'https://accounts.google.com,https://issuer.example.com',
      }),
    ).toEqual([
      "policy issuers[0].issuer: https://issuer.example.com is in BROKER_ISSUERS (Google's callers)",
    ]);
  });
});

describe('urlProblem (the wire rule for URLs a credential travels to)', () => {
  it('accepts https anywhere and http only on loopback', () => {
    expect(checkUrl('https://oauth2.googleapis.com/token')).toBeUndefined();
    expect(checkUrl('http://127.0.0.1:8080/token')).toBeUndefined();
    expect(checkUrl('http://localhost:1/x')).toBeUndefined();
    expect(checkUrl('http://[::1]:1/x')).toBeUndefined();
    expect(checkUrl('http://10.0.0.1/x')).toMatch(/must be https/);
    expect(checkUrl('http://127.0.0.1.evil.com/x')).toMatch(/must be https/);
    expect(checkUrl('https://user:pw@host/x')).toMatch(/credentials/);
    expect(checkUrl('ftp://host/x')).toMatch(/must be https/);
  });
});
