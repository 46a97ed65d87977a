import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_DOC, renderConfigDoc } from '../../infra/config-doc.js';
import { loadConfig } from '../../shared/config.js';
import { ConfigError } from '../../shared/errors.js';
import { type IntSetting, SETTINGS } from '../../shared/settings.js';

const io = {
  readFile: () => '',
  cwd: '/',
  dirname: (p: string) => p,
  resolve: (...p: string[]) => p.join('/'),
};
const POLICY = JSON.stringify({
  serviceAccounts: [{ email: 'a@p.iam.gserviceaccount.com', keyless: true }],
  grants: [
    {
      callers: ['c@p.iam.gserviceaccount.com'],
      serviceAccounts: ['a@p.iam.gserviceaccount.com'],
      scopes: ['s'],
    },
  ],
});
const base = { BROKER_POLICY: POLICY, BROKER_AUDIENCE: 'https://broker.example' };

describe('the settings table', () => {
  it('is what docs/configuration.md shows (run `npm run docs:config` after changing it)', () => {
    const doc = readFileSync(CONFIG_DOC, 'utf8');
    expect(renderConfigDoc(doc)).toBe(doc);
  });

  it('gives the loader its defaults', () => {
    const c = loadConfig(base, io);
    expect(c).toMatchObject({
      jwksUrl: SETTINGS.BROKER_JWKS_URL.default,
      tokenUrl: SETTINGS.BROKER_TOKEN_URL.default,
      iamCredentialsUrl: SETTINGS.BROKER_IAM_CREDENTIALS_URL.default,
      metadataHost: SETTINGS.GCE_METADATA_HOST.default,
      issuers: SETTINGS.BROKER_ISSUERS.default.split(','),
      refreshSkewSeconds: SETTINGS.BROKER_REFRESH_SKEW_SECONDS.default,
      refreshAheadSeconds: SETTINGS.BROKER_REFRESH_AHEAD_SECONDS.default,
      cacheTimeoutMs: SETTINGS.BROKER_CACHE_TIMEOUT_MS.default,
      keyTtlSeconds: SETTINGS.BROKER_KEY_TTL_SECONDS.default,
      l1MaxEntries: SETTINGS.BROKER_L1_MAX_ENTRIES.default,
      clockToleranceSeconds: SETTINGS.BROKER_CLOCK_TOLERANCE_SECONDS.default,
      allowSignatureRemovedByGoogle: false,
    });
  });

  it('gives the loader its ranges: each integer is accepted at its bounds and refused just past them', () => {
    const ints = Object.entries(SETTINGS).filter((e): e is [string, IntSetting] => e[1].kind === 'int');
    expect(ints.length).toBeGreaterThan(5);
    for (const [name, s] of ints) {
      expect(() => loadConfig({ ...base, [name]: String(s.min) }, io)).not.toThrow();
      expect(() => loadConfig({ ...base, [name]: String(s.max) }, io)).not.toThrow();
      for (const bad of [String(s.max + 1), ...(s.min > 0 ? [String(s.min - 1)] : []), '1.5']) {
        let err: unknown;
        try {
          loadConfig({ ...base, [name]: bad }, io);
        } catch (e) {
          err = e;
        }
        expect(err, `${name}=${bad}`).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).problems).toEqual([
          `${name} must be an integer from ${s.min} to ${s.max}, got ${JSON.stringify(bad)}`,
        ]);
      }
    }
  });
});
