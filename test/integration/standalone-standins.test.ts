import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ROOT } from '../../infra/broker-process.js';
import { serveInProcess } from '../../infra/in-process-broker.js';
import { post } from './support/http.js';

// The stand-ins run alone, as someone driving a broker of their own would: the Google stand-in with
// a keyed account (its key file made on the spot) and a keyless one, the Secret Manager stand-in with
// a key stored from a file. A broker configured from nothing but the `export` lines they print, a
// policy and an audience then serves tokens for both accounts.

const AUDIENCE = 'https://broker.local.test';
const KEYED = 'reporting@acme.iam.gserviceaccount.com';
const STORED = 'ledger@acme.iam.gserviceaccount.com';
const KEYLESS = 'job@acme.iam.gserviceaccount.com';
const BROKER = 'broker@acme.iam.gserviceaccount.com';
const CALLER = 'billing@acme.iam.gserviceaccount.com';
const SCOPE = 'https://www.googleapis.com/auth/bigquery.readonly';
const dir = mkdtempSync(join(tmpdir(), 'standalone-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

/** Starts a built stand-in and resolves with what it printed once it printed `until`. */
async function run(script: string, args: string[], until: RegExp): Promise<string> {
  const child = spawn(process.execPath, [join(ROOT, 'dist/infra', script), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  await vi.waitFor(() => expect(out).toMatch(until), { timeout: 15_000 });
  return out;
}

const exportsOf = (out: string) =>
  Object.fromEntries([...out.matchAll(/^export (\w+)=(\S+)$/gm)].map((m) => [m[1], m[2]])) as Record<
    string,
    string
  >;

describe('the standalone stand-ins', () => {
  it('register keyed and keyless accounts and print every export a broker needs; a broker on those alone serves tokens', async () => {
    const keyFile = join(dir, 'keys/reporting.json');
    const google = await run(
      'google/main.js',
      [
        '--port',
        '0',
        '--iam-port',
        '0',
        '--metadata-port',
        '0',
        '--metadata-email',
        BROKER,
        '--keyless',
        KEYLESS,
        '--keyed',
        `${KEYED}=${keyFile}`,
        '--keyed',
        `${STORED}=${join(dir, 'ledger.json')}`,
      ],
      /export GCE_METADATA_HOST=/,
    );
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(keyFile, 'utf8'))).toMatchObject({
      type: 'service_account',
      client_email: KEYED,
    });
    expect(google).toContain(`in the broker's policy: {"email": "${KEYED}", "key": "file:${keyFile}"}`);
    const googleEnv = exportsOf(google);
    expect(Object.keys(googleEnv).sort()).toEqual([
      'BROKER_IAM_CREDENTIALS_URL',
      'BROKER_ISSUERS',
      'BROKER_JWKS_URL',
      'BROKER_TOKEN_URL',
      'GCE_METADATA_HOST',
    ]);
    // The second key goes to Secret Manager, as an operator would put it there.
    const secretManager = await run(
      'secret-manager/main.js',
      ['--port', '0', '--secret', `projects/acme/secrets/ledger-key=${join(dir, 'ledger.json')}`],
      /export SECRET_MANAGER_EMULATOR_HOST=/,
    );
    expect(secretManager).toContain('projects/acme/secrets/ledger-key/versions/1');
    const policyFile = join(dir, 'policy.json');
    writeFileSync(
      policyFile,
      JSON.stringify({
        serviceAccounts: [
          { email: KEYED, key: `file:${keyFile}` },
          { email: STORED, key: 'projects/acme/secrets/ledger-key/versions/latest' },
          { email: KEYLESS, keyless: true },
        ],
        grants: [{ callers: [CALLER], serviceAccounts: [KEYED, STORED, KEYLESS], scopes: [SCOPE] }],
      }),
    );
    const broker = await serveInProcess({
      ...googleEnv,
      ...exportsOf(secretManager),
      BROKER_AUDIENCE: AUDIENCE,
      BROKER_POLICY_FILE: policyFile,
    });
    try {
      // The caller's ID token, raw, from the command the Google stand-in printed.
      const idTokenUrl = /curl -sS -X POST (\S+\/local\/idtoken)/.exec(google)?.[1] ?? '';
      const { id_token } = (await (
        await fetch(idTokenUrl, {
          method: 'POST',
          body: JSON.stringify({ email: CALLER, audience: AUDIENCE }),
        })
      ).json()) as { id_token: string };
      const tokeninfo = /tokeninfo (\S+)/.exec(google)?.[1] ?? '';
      for (const account of [KEYED, STORED, KEYLESS]) {
        const r = await post(
          `${broker.url}/token`,
          { serviceAccount: account, scopes: [SCOPE] },
          { token: id_token },
        );
        expect(r.status, JSON.stringify(r.json)).toBe(200);
        const info = await (await fetch(`${tokeninfo}?access_token=${r.json['access_token']}`)).json();
        expect(info).toMatchObject({ email: account, scope: SCOPE });
      }
    } finally {
      await broker.stop();
    }
  });

  it('keeps an existing key file as it is, and refuses one that belongs to another account (exit 2)', async () => {
    const keyFile = join(dir, 'keys/reporting.json');
    if (!existsSync(keyFile)) return;
    const before = readFileSync(keyFile, 'utf8');
    await run(
      'google/main.js',
      ['--port', '0', '--iam-port', '0', '--keyed', `${KEYED}=${keyFile}`],
      /export BROKER_TOKEN_URL=/,
    );
    expect(readFileSync(keyFile, 'utf8')).toBe(before);
    const wrong = spawnSync(
      process.execPath,
      [
        join(ROOT, 'dist/infra/google/main.js'),
        '--port',
        '0',
        '--iam-port',
        '0',
        '--keyed',
        `${STORED}=${keyFile}`,
      ],
      { encoding: 'utf8', timeout: 15_000 },
    );
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toContain(`keyed account ${STORED}: ${keyFile} is the key of ${KEYED}`);
  });
});
