import { execFile, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BrokerProcess, ROOT } from '../../infra/broker-process.js';
import { BIGQUERY, BILLING, REPORTING, type Stack, startStack } from './support/stack.js';

// The client's own npm package, as a user gets it: packed by `npm run pack:client` on a fresh clone, installed from
// the tarball into an empty project without the optional peer (google-auth-library), then used
// from a .mjs file against a real broker and type-checked from a tiny TypeScript consumer.

const PKG = join(ROOT, 'packages/client');
const NAME = 'gcp-token-broker-client';
let dir: string;
let consumer: string;
let stack: Stack;
let broker: BrokerProcess;
let clone: string;
let hadDist: boolean;
/** What `npm run pack:client` printed: the tarball's path. */
let printed: string;
/** The tarball's files. */
let files: string[];

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Runs a command without blocking this process, which serves the stand-ins the broker calls. */
function runAsync(cmd: string, args: string[], cwd: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { cwd, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

/** Installed packages (every directory under node_modules with a package.json) and their bytes on disk. */
function measure(nodeModules: string): { packages: string[]; bytes: number } {
  const packages: string[] = [];
  let bytes = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) continue;
      if (e.isDirectory()) walk(p);
      else bytes += lstatSync(p).size;
    }
  };
  const scan = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (!e.isDirectory() || e.name === '.bin') continue;
      if (e.name.startsWith('@')) {
        for (const s of readdirSync(join(d, e.name))) packages.push(`${e.name}/${s}`);
      } else if (!e.name.startsWith('.')) packages.push(e.name);
    }
  };
  scan(nodeModules);
  walk(nodeModules);
  return { packages, bytes };
}

/**
 * A fresh clone, as far as the client is concerned: the tracked files (as in the work tree) and no
 * dist/ anywhere; node_modules is linked, as `npm install` would make it. The packing happens there,
 * so that no test rebuilds the repository's own packages/client/dist while others run its CLI.
 */
function freshClone(to: string): void {
  const tracked = run('git', ['ls-files', '-z'], ROOT).split('\0').filter(Boolean);
  for (const f of tracked) {
    if (!existsSync(join(ROOT, f))) continue; // deleted in the work tree, not yet committed
    mkdirSync(dirname(join(to, f)), { recursive: true });
    copyFileSync(join(ROOT, f), join(to, f));
  }
  symlinkSync(join(ROOT, 'node_modules'), join(to, 'node_modules'));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'client-package-'));
  clone = join(dir, 'clone');
  freshClone(clone);
  hadDist = existsSync(join(clone, 'dist')) || existsSync(join(clone, 'packages/client/dist'));
  printed = run('npm', ['run', '--silent', 'pack:client'], clone).trim();
  files = run('tar', ['-tzf', printed], dir)
    .split('\n')
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ''));
  consumer = join(dir, 'consumer');
  mkdirSync(consumer);
  writeFileSync(
    join(consumer, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  );
  run(
    'npm',
    ['install', printed, '--omit=peer', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'],
    consumer,
  );
  stack = await startStack();
  broker = await stack.startBroker('broker');
}, 180_000);
afterAll(async () => {
  await stack?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the gcp-token-broker-client package', () => {
  it('packs the bundles, the type declarations and the README, and no source or test', () => {
    for (const f of [
      'README.md',
      'package.json',
      'dist/index.js',
      'dist/google-auth.js',
      'dist/cli.js',
      'bin/broker-token.js',
      'CHANGELOG.md',
      'dist/types/client/src/index.d.ts',
      'dist/types/client/src/auth-client.d.ts',
      'dist/types/wire/wire.d.ts',
    ])
      expect(files).toContain(f);
    expect(
      files.filter(
        (f) =>
          !f.startsWith('dist/') &&
          !['README.md', 'CHANGELOG.md', 'package.json', 'bin/broker-token.js'].includes(f),
      ),
    ).toEqual([]);
  });

  it('installs without the peer as at most 5 packages and 1 MB', () => {
    const { packages, bytes } = measure(join(consumer, 'node_modules'));
    process.stdout.write(
      `client package: tarball ${statSync(printed).size} B; installed ${packages.length} package(s), ${bytes} B in node_modules\n`,
    );
    expect(packages).toEqual([NAME]);
    expect(packages.length).toBeLessThanOrEqual(5);
    expect(bytes).toBeLessThan(1024 * 1024);
  });

  it('works from a .mjs file against a real broker; the google-auth entry needs the peer, and works with it', async () => {
    writeFileSync(
      join(consumer, 'use.mjs'),
      `import { BrokerClient, CLIENT_ERROR_CODES } from '${NAME}';
const c = new BrokerClient({ url: process.env.BROKER_URL, idToken: async () => process.env.ID_TOKEN });
const t = await c.accessToken({ serviceAccount: process.env.SA, scopes: [process.env.SCOPE] });
let peer = 'loaded';
try { await import('${NAME}/google-auth'); } catch (e) { peer = e.code + ' ' + /google-auth-library/.test(e.message); }
let refused = 'no';
try { new BrokerClient({ url: 'http://broker.example.com', idToken: async () => '' }); } catch (e) { refused = e.name; }
let headerMatches = null;
if (peer === 'loaded') {
  const { BrokerAuthClient } = await import('${NAME}/google-auth');
  const { AuthClient } = await import('google-auth-library');
  const a = new BrokerAuthClient(c, { serviceAccount: process.env.SA, scopes: [process.env.SCOPE] });
  headerMatches = a instanceof AuthClient && (await a.getRequestHeaders()).get('authorization') === 'Bearer ' + t.token;
}
console.log(JSON.stringify({ ya29: t.token.startsWith('ya29.'), expiresAt: t.expiresAt, peer, refused, codes: CLIENT_ERROR_CODES, headerMatches }));
`,
    );
    const env = async () => ({
      BROKER_URL: broker.url,
      ID_TOKEN: await stack.callerToken(BILLING),
      SA: REPORTING,
      SCOPE: BIGQUERY,
    });
    const without = JSON.parse(
      await runAsync(process.execPath, ['use.mjs'], consumer, await env()),
    ) as Record<string, unknown>;
    expect(without).toEqual({
      ya29: true,
      expiresAt: expect.any(Number),
      peer: 'ERR_MODULE_NOT_FOUND true',
      refused: 'TypeError',
      codes: ['network_error', 'invalid_response'],
      headerMatches: null,
    });
    expect(without['expiresAt'] as number).toBeGreaterThan(Date.now() + 3000_000);

    // With the peer present (linked from this repo, as npm would install it).
    symlinkSync(
      join(ROOT, 'node_modules/google-auth-library'),
      join(consumer, 'node_modules/google-auth-library'),
    );
    try {
      const withPeer = JSON.parse(
        await runAsync(process.execPath, ['use.mjs'], consumer, await env()),
      ) as Record<string, unknown>;
      expect(withPeer).toMatchObject({ ya29: true, peer: 'loaded', headerMatches: true });
    } finally {
      rmSync(join(consumer, 'node_modules/google-auth-library'));
    }
  });

  it('installs the broker-token CLI', () => {
    const help = run(join(consumer, 'node_modules/.bin/broker-token'), ['--help'], consumer);
    expect(help).toMatch(/^usage: broker-token \[COMMAND\]/);
    expect(help).toContain('Exit codes:');
    // Without the peer and without $BROKER_ID_TOKEN there is no caller ID token: a plain message, exit 1.
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env['BROKER_ID_TOKEN'];
    const r = spawnSync(
      join(consumer, 'node_modules/.bin/broker-token'),
      ['print-access-token', '--url', 'http://127.0.0.1:1', '--impersonate-service-account', REPORTING],
      { cwd: consumer, encoding: 'utf8', env },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^broker-token: no caller ID token for audience http:\/\/127\.0\.0\.1:1: set \$BROKER_ID_TOKEN to one, or run where Application Default Credentials give one .*npm install google-auth-library\n$/,
    );
    expect(r.stderr).not.toMatch(/googleIdTokenSource|idToken` function/);
  });

  it('has type declarations that a strict TypeScript consumer compiles against, without the peer', () => {
    writeFileSync(
      join(consumer, 'consumer.ts'),
      `import { BrokerClient, BrokerClientError, type BrokerClientErrorCode, type BrokerToken } from '${NAME}';

const client = new BrokerClient({ url: 'https://broker.example', idToken: async () => 'id-token' });

export async function get(): Promise<BrokerToken> {
  try {
    return await client.accessToken({ serviceAccount: 'a@b.iam.gserviceaccount.com', scopes: ['s'], minLifetimeSeconds: 60 });
  } catch (e) {
    if (e instanceof BrokerClientError) {
      const code: BrokerClientErrorCode = e.code;
      if (code === 'rate_limited' || code === 'invalid_target' || code === 'network_error') throw e;
    }
    throw e;
  }
}
// @ts-expect-error: a service account or a tenant, not both
client.accessToken({ serviceAccount: 'a', tenant: 'b', scopes: ['s'] });
// @ts-expect-error: a JWT is for an audience or for scopes, not both
client.jwt({ tenant: 't', audience: 'https://a/', scopes: ['s'] });
// @ts-expect-error: error codes are a closed list
export const bad: BrokerClientErrorCode = 'no_such_code';
`,
    );
    writeFileSync(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          exactOptionalPropertyTypes: true,
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          lib: ['es2022', 'dom'],
          types: [],
          noEmit: true,
          skipLibCheck: false,
        },
        files: ['consumer.ts'],
      }),
    );
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', consumer], {
      encoding: 'utf8',
    });
    expect(`${tsc.stdout}${tsc.stderr}`).toBe('');
    expect(tsc.status).toBe(0);
  });
});

// A fresh clone has no dist/ anywhere: `npm run pack:client` must make its own folders and print the
// tarball's path, and that tarball must install alone into an empty directory with its bin. (.ci/run
// does the same on CI's own fresh clone, after a real `npm install`.)
describe('npm run pack:client on a fresh clone', () => {
  it('made dist/ and printed the tarball path; `npm install <tgz>` then `npx broker-token --version` works in an empty directory', () => {
    expect(hadDist).toBe(false);
    const version = (JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8')) as { version: string })
      .version;
    expect(printed).toBe(join(clone, 'dist', `${NAME}-${version}.tgz`));
    expect(statSync(printed).size).toBeGreaterThan(10_000);

    const empty = join(dir, 'empty');
    mkdirSync(empty);
    run('npm', ['install', printed, '--offline', '--no-audit', '--no-fund'], empty);
    expect(readdirSync(join(empty, 'node_modules')).filter((d) => !d.startsWith('.'))).toEqual([NAME]);
    expect(readdirSync(join(empty, 'node_modules/.bin'))).toEqual(['broker-token']);
    expect(run('npx', ['--no-install', 'broker-token', '--version'], empty).trim()).toBe(
      `broker-token ${version}`,
    );
    // Installed alone, `policy` says where it runs: the broker's policy code does not ship in the package.
    const alone = spawnSync('npx', ['--no-install', 'broker-token', 'policy', 'check', 'p.json'], {
      cwd: empty,
      encoding: 'utf8',
    });
    expect(alone.status).toBe(2);
    expect(alone.stderr).toContain('run them in a clone of the broker');
  });

  it("in the clone, the workspace's broker-token runs `policy check` with the broker's own code", () => {
    const policy = join(dir, 'policy.json');
    writeFileSync(
      policy,
      JSON.stringify({
        serviceAccounts: [{ email: 'a@p.iam.gserviceaccount.com', keyless: true }],
        grants: [
          {
            callers: ['b@p.iam.gserviceaccount.com'],
            serviceAccounts: ['a@p.iam.gserviceaccount.com'],
            scopes: ['s'],
          },
        ],
      }),
    );
    const bin = join(ROOT, 'node_modules/.bin/broker-token');
    expect(run(bin, ['policy', 'check', policy], ROOT)).toContain('valid: 1 service account(s), 1 grant(s)');
    writeFileSync(policy, JSON.stringify({ serviceAccounts: [], grants: [] }));
    const refused = spawnSync(bin, ['policy', 'check', policy], { cwd: ROOT, encoding: 'utf8' });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('serviceAccounts: must not be empty');
  });
});
