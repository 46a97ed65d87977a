import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_SCOPE, main } from '../../packages/client/src/cli/broker-token.js';

// The CLI's argument handling, against a loopback server that records every request it gets:
// usage errors must exit 2 with nothing sent; good flags must reach the wire as the broker expects.

const SA = 'reporting@acme.iam.gserviceaccount.com';
const BQ = 'https://www.googleapis.com/auth/bigquery.readonly';
let server: Server;
let url: string;
const requests: Array<{ path: string; body: Record<string, unknown>; auth: string | undefined }> = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      requests.push({
        path: req.url ?? '',
        body: JSON.parse(body || '{}') as Record<string, unknown>,
        auth: req.headers.authorization,
      });
      res.setHeader('content-type', 'application/json');
      const exp = Math.floor(Date.now() / 1000) + 3600;
      res.end(
        JSON.stringify(
          req.url === '/idtoken'
            ? { id_token: 'id.token.value', expires_in: 3600, expires_at: exp }
            : req.url === '/jwt'
              ? { token: 'jwt.token.value', token_type: 'Bearer', expires_in: 3600, expires_at: exp }
              : {
                  access_token: 'ya29.value',
                  token_type: 'Bearer',
                  expires_in: 3600,
                  expires_at: exp,
                  scope: 's',
                },
        ),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server?.close();
});
beforeEach(() => {
  requests.length = 0;
});

async function run(args: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    args,
    { BROKER_ID_TOKEN: 'caller-id-token', ...env },
    (s) => out.push(s),
    (s) => err.push(s),
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('usage errors exit 2 before any request is made', () => {
  const cases: Array<[string, (u: string) => string[]]> = [
    ['an unknown flag', (u) => ['--url', u, '--impersonate-service-account', SA, '--bogus']],
    ['an unknown command', (u) => ['print-acess-token', '--url', u, '--impersonate-service-account', SA]],
    ['no target', (u) => ['print-access-token', '--url', u]],
    ['two targets', (u) => ['--url', u, '--impersonate-service-account', SA, '--tenant', 'blue']],
    ['no URL', () => ['print-access-token', '--impersonate-service-account', SA]],
    ['plain http off loopback', () => ['--url', 'http://broker.example.com', '--service-account', SA]],
    ['an empty scope in the list', (u) => ['--url', u, '--service-account', SA, '--scopes', `${BQ},`]],
    ['a scope with a space', (u) => ['--url', u, '--service-account', SA, '--scopes', `${BQ} openid`]],
    ['a min lifetime over 3300', (u) => ['--url', u, '--service-account', SA, '--min-lifetime', '3301']],
    ['a fractional min lifetime', (u) => ['--url', u, '--service-account', SA, '--min-lifetime', '1.5']],
    ['an ID token without audience', (u) => ['print-identity-token', '--url', u, '--service-account', SA]],
    [
      'two audiences',
      (u) => [
        'print-identity-token',
        '--url',
        u,
        '--service-account',
        SA,
        '--audiences',
        'https://a,https://b',
      ],
    ],
    [
      '--audiences on print-access-token',
      (u) => ['print-access-token', '--url', u, '--service-account', SA, '--audiences', 'https://a'],
    ],
    [
      '--subject on print-identity-token',
      (u) => [
        'print-identity-token',
        '--url',
        u,
        '--service-account',
        SA,
        '--audiences',
        'https://a',
        '--subject',
        'a@b',
      ],
    ],
    ['--jwt with --id-token', (u) => ['--url', u, '--service-account', SA, '--jwt', '--id-token']],
    ['a bad --format', (u) => ['--url', u, '--service-account', SA, '--format', 'yaml']],
    ['a stray argument', (u) => ['print-access-token', 'extra', '--url', u, '--service-account', SA]],
    ['credential-config without a source', (u) => ['credential-config', '--url', u, '--service-account', SA]],
    [
      'credential-config with two sources',
      (u) => [
        'credential-config',
        '--url',
        u,
        '--service-account',
        SA,
        '--credential-source-file',
        '/tmp/t',
        '--credential-source-metadata',
      ],
    ],
    [
      'an executable timeout out of range',
      (u) => [
        'credential-config',
        '--url',
        u,
        '--service-account',
        SA,
        '--executable-command',
        'x',
        '--executable-timeout-millis',
        '200000',
      ],
    ],
    [
      'malformed source headers',
      (u) => [
        'credential-config',
        '--url',
        u,
        '--service-account',
        SA,
        '--credential-source-url',
        'http://127.0.0.1/t',
        '--credential-source-headers',
        'no-equals-sign',
      ],
    ],
    [
      'a delegation chain',
      (u) => ['--url', u, '--impersonate-service-account', `hop@acme.iam.gserviceaccount.com,${SA}`],
    ],
    ['a chain as the positional account', (u) => ['print-access-token', `a@b.com,${SA}`, '--url', u]],
    [
      '--delegates',
      (u) => ['--url', u, '--service-account', SA, '--delegates', 'hop@acme.iam.gserviceaccount.com'],
    ],
    ['a positional account and a flag', (u) => ['print-access-token', SA, '--url', u, '--tenant', 'blue']],
    ['a lifetime of 0', (u) => ['--url', u, '--service-account', SA, '--lifetime', '0']],
    ['a lifetime over 12 h', (u) => ['--url', u, '--service-account', SA, '--lifetime', '43201']],
    ['a fractional lifetime', (u) => ['--url', u, '--service-account', SA, '--lifetime', '1.5h']],
    [
      '--lifetime with --min-lifetime',
      (u) => ['--url', u, '--service-account', SA, '--lifetime', '1h', '--min-lifetime', '60'],
    ],
    [
      '--lifetime on an ID token',
      (u) => [
        'print-identity-token',
        '--url',
        u,
        '--service-account',
        SA,
        '--audiences',
        'https://a',
        '--lifetime',
        '60',
      ],
    ],
    [
      'an unknown field in --format value()',
      (u) => ['--url', u, '--service-account', SA, '--format', 'value(secret)'],
    ],
    ['--format with --json', (u) => ['--url', u, '--service-account', SA, '--format', 'json', '--json']],
    ['a flag without its value', (u) => ['--service-account', SA, '--url', u, '--scopes']],
  ];
  it.each(cases)('%s', async (_name, args) => {
    const r = await run(args(url));
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^broker-token: .+\nRun `broker-token --help` for usage\.$/s);
    expect(r.err).not.toContain('caller-id-token');
    expect(requests).toHaveLength(0);
  });
});

describe('--help', () => {
  it('lists the commands, every environment variable and every exit code, and sends nothing', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const word of [
      'print-access-token',
      'print-identity-token',
      'credential-config',
      '--impersonate-service-account',
      '--scopes',
      '--audiences',
      '--include-email',
      'BROKER_URL',
      'BROKER_AUDIENCE',
      'BROKER_ID_TOKEN',
      'GOOGLE_APPLICATION_CREDENTIALS',
      'GCE_METADATA_HOST',
    ])
      expect(r.out).toContain(word);
    const codes = [...r.out.split('Exit codes:')[1]!.matchAll(/^ {2}(\d+) /gm)].map((m) => m[1]);
    expect(codes).toEqual(['0', '1', '2', '75']);
    expect(requests).toHaveLength(0);
  });
});

describe('flags as gcloud spells them reach the wire', () => {
  it('print-access-token: the default scope is cloud-platform; --scopes takes a comma list', async () => {
    const a = await run(['print-access-token', '--url', url, '--impersonate-service-account', SA]);
    const b = await run(['--url', url, '--service-account', SA, '--scopes', `${BQ},${DEFAULT_SCOPE},${BQ}`]);
    expect([a.code, a.out, b.code, b.out]).toEqual([0, 'ya29.value', 0, 'ya29.value']);
    expect(requests.map((r) => [r.path, r.body['serviceAccount'], r.body['scopes']])).toEqual([
      ['/token', SA, [DEFAULT_SCOPE]],
      ['/token', SA, [BQ, DEFAULT_SCOPE]], // de-duplicated and sorted
    ]);
    expect(requests[0]?.auth).toBe('Bearer caller-id-token');
  });

  it('print-identity-token: --audiences, --include-email, for a tenant; BROKER_URL from the environment', async () => {
    const r = await run(
      ['print-identity-token', '--tenant', 'blue', '--audiences', 'https://svc.example', '--include-email'],
      {
        BROKER_URL: url,
      },
    );
    expect(r).toMatchObject({ code: 0, out: 'id.token.value' });
    expect(requests.map((q) => [q.path, q.body])).toEqual([
      ['/idtoken', { tenant: 'blue', audience: 'https://svc.example', minLifetimeSeconds: 300 }],
    ]);
  });

  it('print-jwt and the older --jwt / --id-token / --scope flags still work', async () => {
    expect(
      (await run(['print-jwt', '--url', url, '--tenant', 'blue', '--audiences', 'https://fs/'])).out,
    ).toBe('jwt.token.value');
    expect((await run(['--url', url, '--tenant', 'blue', '--jwt', '--audience', 'https://fs/'])).code).toBe(
      0,
    );
    expect(
      (await run(['--url', url, '--tenant', 'blue', '--id-token', '--audience', 'https://a/'])).code,
    ).toBe(0);
    const json = await run(['--url', url, '--service-account', SA, '--scope', BQ, '--json']);
    expect(JSON.parse(json.out)).toMatchObject({ token: 'ya29.value', scope: 's' });
    expect(requests.map((q) => q.path)).toEqual(['/jwt', '/jwt', '/idtoken', '/token']);
    expect(requests[3]?.body['scopes']).toEqual([BQ]);
  });
});

describe('credential-config --output-file', () => {
  const args = (path: string) => [
    'credential-config',
    '--url',
    'https://broker.example',
    '--impersonate-service-account',
    SA,
    '--credential-source-file',
    '/var/run/token',
    '--output-file',
    path,
  ];

  it('writes the file 0600, replacing an existing 0666 one, and never follows a symlink at the path', async () => {
    const { lstatSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync, chmodSync } = await import(
      'node:fs'
    );
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'credential-config-'));
    const fresh = join(dir, 'fresh.json');
    expect((await run(args(fresh))).code).toBe(0);
    expect(lstatSync(fresh).mode & 0o777).toBe(0o600);

    const loose = join(dir, 'loose.json');
    writeFileSync(loose, 'old');
    chmodSync(loose, 0o666);
    expect((await run(args(loose))).code).toBe(0);
    expect(lstatSync(loose).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(loose, 'utf8'))).toMatchObject({ type: 'external_account' });

    // A link planted at the path, to a file the attacker wants overwritten (or read, being made 0644).
    const target = join(dir, 'target');
    writeFileSync(target, 'untouched');
    chmodSync(target, 0o644);
    const link = join(dir, 'link.json');
    symlinkSync(target, link);
    expect((await run(args(link))).code).toBe(0);
    expect(readFileSync(target, 'utf8')).toBe('untouched');
    expect(lstatSync(target).mode & 0o777).toBe(0o644);
    expect(lstatSync(link).isSymbolicLink()).toBe(false);
    expect(lstatSync(link).mode & 0o777).toBe(0o600);
  });
});

describe('its own words for a bad command line', () => {
  it('names an unknown flag and suggests the one meant; names a flag without its value', async () => {
    const a = await run(['--url', url, '--service-account', SA, '--scope-list', BQ]);
    expect(a.err).toBe(
      'broker-token: unknown flag --scope-list; did you mean --scope?\nRun `broker-token --help` for usage.',
    );
    const b = await run(['--service-account', SA, '--url']);
    expect(b.err.split('\n')[0]).toBe('broker-token: --url needs a value');
    const c = await run(['--help=yes']);
    expect([c.code, c.err.split('\n')[0]]).toEqual([2, 'broker-token: --help takes no value']);
    expect(`${a.err}${b.err}${c.err}`).not.toMatch(/positional|Unknown option|argument missing/);
    expect(requests).toHaveLength(0);
  });

  it('refuses a delegation chain, naming the account to give instead', async () => {
    const r = await run([
      '--url',
      url,
      '--impersonate-service-account',
      `hop@acme.iam.gserviceaccount.com,${SA}`,
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`name only the last account (${SA})`);
    expect(r.err).toContain("the broker's policy sets any delegation chain");
  });
});

describe('--version', () => {
  it("prints the client package's version and sends nothing", async () => {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(
      readFileSync(new URL('../../packages/client/package.json', import.meta.url), 'utf8'),
    ) as {
      version: string;
    };
    expect(await run(['--version'])).toEqual({ code: 0, out: `broker-token ${pkg.version}`, err: '' });
    expect(requests).toHaveLength(0);
  });
});

describe('gcloud-style forms', () => {
  it('a positional account, with or without the command, names the service account', async () => {
    expect((await run(['print-access-token', SA, '--url', url])).out).toBe('ya29.value');
    expect((await run([SA, '--url', url, '--scopes', BQ])).out).toBe('ya29.value');
    expect(requests.map((q) => [q.path, q.body['serviceAccount'], q.body['scopes']])).toEqual([
      ['/token', SA, [DEFAULT_SCOPE]],
      ['/token', SA, [BQ]],
    ]);
  });

  it('--lifetime sends lifetimeSeconds (seconds, s, m or h) and asks no extra life on top', async () => {
    for (const [given, seconds] of [
      ['7200', 7200],
      ['90s', 90],
      ['30m', 1800],
      ['12h', 43200],
    ] as const) {
      requests.length = 0;
      expect((await run(['print-access-token', SA, '--url', url, '--lifetime', given])).code).toBe(0);
      expect(requests[0]?.body).toEqual({
        serviceAccount: SA,
        scopes: [DEFAULT_SCOPE],
        lifetimeSeconds: seconds,
        minLifetimeSeconds: 0,
      });
    }
  });

  it('--format json, value(FIELD) and value(F1,F2) print what gcloud would', async () => {
    const json = JSON.parse((await run([SA, '--url', url, '--format=json'])).out) as Record<string, unknown>;
    expect(json).toEqual({
      token: 'ya29.value',
      expires_at: expect.any(Number),
      expires_in: expect.any(Number),
      expiry: new Date((json['expires_at'] as number) * 1000).toISOString(),
      scope: 's',
      cache_status: null,
    });
    expect(json['expires_in'] as number).toBeGreaterThan(3590);
    expect((await run([SA, '--url', url, '--format=value(token)'])).out).toBe('ya29.value');
    expect((await run([SA, '--url', url, '--format', 'value(token, scope)'])).out).toBe('ya29.value\ts');
    const id = await run([
      'print-identity-token',
      SA,
      '--url',
      url,
      '--audiences',
      'https://a',
      '--format',
      'value(expires_at)',
    ]);
    expect(id.out).toMatch(/^\d{10}$/);
  });
});
