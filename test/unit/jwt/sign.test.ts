import { createPublicKey, createVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ASSERTION_HEADER,
  accessTokenAssertionClaims,
  idTokenAssertionClaims,
  selfSignedClaims,
  selfSignedHeader,
} from '../../../shared/jwt/claims.js';
import { importSigningKey, signJwt } from '../../../shared/jwt/sign.js';
import { parseServiceAccountKey } from '../../../shared/service-account-key.js';

const keyFile = readFileSync(new URL('../../fixtures/service-account.json', import.meta.url), 'utf8');
const key = parseServiceAccountKey(keyFile);
const TOKEN_URL = 'https://oauth2.googleapis.com/token';
const NOW = 1_700_000_000_123; // ms; iat is 1700000000
const SCOPES = [
  'https://www.googleapis.com/auth/bigquery.readonly',
  'https://www.googleapis.com/auth/devstorage.read_only',
];

// Computed once with node:crypto's createSign('RSA-SHA256') from the fixture key; RS256 (PKCS#1 v1.5) is deterministic.
const EXPECTED_ASSERTION =
  'eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJmaXh0dXJlQGZpeHR1cmUtcHJvamVjdC5pYW0uZ3NlcnZpY2VhY2NvdW50LmNvbSIsInNjb3BlIjoiaHR0cHM6Ly93d3cuZ29vZ2xlYXBpcy5jb20vYXV0aC9iaWdxdWVyeS5yZWFkb25seSBodHRwczovL3d3dy5nb29nbGVhcGlzLmNvbS9hdXRoL2RldnN0b3JhZ2UucmVhZF9vbmx5IiwiYXVkIjoiaHR0cHM6Ly9vYXV0aDIuZ29vZ2xlYXBpcy5jb20vdG9rZW4iLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.NbcurL4ZAvNCp1aVMCimpF_sqePQGzhxNKwoFeRIa6nSeRgMi6u2C1EG9OlwxhG7-r7vyMFygwOgQnk0Q0_uY1P665Y1_pVKBq1lI5V_w5PdrogpkHAfZvhr3x8fvu0rhlr--onHYzLzBq2fx1V9k74UfByBh0Q4w-uVhPWyjXoUP9ow0ho4bVWVNH24sSEmw8fBYIfqSlWF8_JdAvoFGy0_yRmw2ML56n_j1Sn3QDIYEIq_C0vgX4gdgXzKJ0qWexfmy5jDu8S7XAsVLyclPEDrVoP2g7LGaWRrkZrYPDDbP_2552yRSuNnZBra-r8d6JxB8tgSYqXSwdtBeaKWvA';
const EXPECTED_SELF_SIGNED =
  'eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1NjcifQ.eyJpc3MiOiJmaXh0dXJlQGZpeHR1cmUtcHJvamVjdC5pYW0uZ3NlcnZpY2VhY2NvdW50LmNvbSIsInN1YiI6ImZpeHR1cmVAZml4dHVyZS1wcm9qZWN0LmlhbS5nc2VydmljZWFjY291bnQuY29tIiwiYXVkIjoiaHR0cHM6Ly9maXJlc3RvcmUuZ29vZ2xlYXBpcy5jb20vIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDB9.Yaz38ZsxoIWG6E5QmoQ7d2hOjHThERS2rC9LW7Egx0WsknkIbpQpO4_0nw4eYM67YkrTrsLV2Cb4yajAwrj9SvELME7uPIBadNdj9qP-f_HWNNDOxQ9Lu66oteXPMHydGmnjnyvEP1iHrAen5ZtZavH0d7U2THIkjHSYZ1AuT5ivV2Sob2OYegwmHHGOm4Pl3ubXBpZ5WeTZhF0GKKAjy4ZFpws80Lx5bx9ZveQill3PJkiQ9KYcZw-ZEURI1dxmKsiWy8_Vm3gd3umRrd4bbh6015yprM-2GEgwZvswO7Wihae9_rXtpCfF8HElinNncsuF9MzevvlryjptZYsLpQ';

function decode(segment: string): unknown {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
}

describe('JWT signing', () => {
  it("encodes the seed's header exactly", async () => {
    const jwt = await signJwt(ASSERTION_HEADER, { a: 1 }, await importSigningKey(key.privateKey));
    expect(jwt.split('.')[0]).toBe('eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9');
  });

  it('signs the access-token assertion byte for byte', async () => {
    const claims = accessTokenAssertionClaims({
      issuer: key.clientEmail,
      scopes: SCOPES,
      tokenUrl: TOKEN_URL,
      nowMs: NOW,
    });
    expect(claims).toEqual({
      iss: key.clientEmail,
      scope: SCOPES.join(' '),
      aud: TOKEN_URL,
      iat: 1_700_000_000,
      exp: 1_700_003_600,
    });
    const jwt = await signJwt(ASSERTION_HEADER, claims, await importSigningKey(key.privateKey));
    expect(jwt).toBe(EXPECTED_ASSERTION);
    expect(jwt).not.toMatch(/[=\n+/]/);
  });

  it('signs the self-signed JWT of the addendum byte for byte', async () => {
    const claims = selfSignedClaims({
      email: key.clientEmail,
      target: { audience: 'https://firestore.googleapis.com/' },
      nowMs: NOW,
    });
    const jwt = await signJwt(selfSignedHeader(key), claims, await importSigningKey(key.privateKey));
    expect(jwt).toBe(EXPECTED_SELF_SIGNED);
    expect(decode(jwt.split('.')[0]!)).toEqual({ alg: 'RS256', typ: 'JWT', kid: key.privateKeyId });
  });

  it('verifies with the public key under RSASSA-PKCS1-v1_5 SHA-256', async () => {
    const claims = accessTokenAssertionClaims({
      issuer: key.clientEmail,
      scopes: SCOPES,
      subject: 'alice@acme.com',
      tokenUrl: TOKEN_URL,
      nowMs: NOW,
    });
    const jwt = await signJwt(ASSERTION_HEADER, claims, await importSigningKey(key.privateKey));
    const [h, c, s] = jwt.split('.') as [string, string, string];
    const ok = createVerify('RSA-SHA256')
      .update(`${h}.${c}`)
      .verify(createPublicKey(key.privateKey), Buffer.from(s, 'base64url'));
    expect(ok).toBe(true);
    expect(decode(c)).toMatchObject({ sub: 'alice@acme.com', exp: 1_700_003_600 });
  });
});

describe('claims', () => {
  it('puts sub only on delegated assertions', () => {
    expect(
      accessTokenAssertionClaims({
        issuer: key.clientEmail,
        scopes: SCOPES,
        tokenUrl: TOKEN_URL,
        nowMs: NOW,
      }),
    ).not.toHaveProperty('sub');
    expect(
      accessTokenAssertionClaims({
        issuer: key.clientEmail,
        scopes: SCOPES,
        subject: 'bob@acme.com',
        tokenUrl: TOKEN_URL,
        nowMs: NOW,
      }),
    ).toHaveProperty('sub', 'bob@acme.com');
  });

  it('keeps exp within an hour of iat', () => {
    const c = accessTokenAssertionClaims({
      issuer: key.clientEmail,
      scopes: SCOPES,
      tokenUrl: TOKEN_URL,
      nowMs: NOW,
    });
    expect(Number(c['exp']) - Number(c['iat'])).toBe(3600);
  });

  it('builds the scope variant of the self-signed JWT', () => {
    expect(selfSignedClaims({ email: key.clientEmail, target: { scopes: SCOPES }, nowMs: NOW })).toEqual({
      iss: key.clientEmail,
      sub: key.clientEmail,
      scope: SCOPES.join(' '),
      iat: 1_700_000_000,
      exp: 1_700_003_600,
    });
  });

  it('builds the ID-token assertion with target_audience and no scope', () => {
    expect(
      idTokenAssertionClaims({
        issuer: key.clientEmail,
        audience: 'https://svc.example.com',
        tokenUrl: TOKEN_URL,
        nowMs: NOW,
      }),
    ).toEqual({
      iss: key.clientEmail,
      aud: TOKEN_URL,
      target_audience: 'https://svc.example.com',
      iat: 1_700_000_000,
      exp: 1_700_003_600,
    });
  });
});
