import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../infra/broker-process.js';
import { DEFAULT_PORT } from '../../infra/start/options.js';
import { tryItCommands } from '../../infra/start/try-it.js';
import { pythonAvailable } from '../support/python.js';

// docs/calling.md's "Try it locally", as a user follows it: `npm start` (the built start.js), then the
// doc's block of commands pasted into another shell. The block is run as written but for its ports: the
// stack runs on a random base (`--port`), so that two runs on one machine (two clones) never collide,
// and the doc's default ports are replaced by that base's (the first test shows the block is what
// `npm start` prints for the default ports). Each command must
// print a token that the Google stand-in's tokeninfo accepts (Python's with no scopes: cloud-platform),
// `npm start` must show each request as a line, and the saved credential file must work after a restart.

const DOC = readFileSync(join(ROOT, 'docs/calling.md'), 'utf8');
/** The port base of this run, and the doc's block with its ports moved there. */
const BASE = 20_000 + Math.floor(Math.random() * 400) * 20;
const GOOGLE = `http://127.0.0.1:${BASE + 1}`;
const atBase = (text: string) =>
  text.replace(
    /127\.0\.0\.1:(\d+)/g,
    (_m, port: string) => `127.0.0.1:${Number(port) - DEFAULT_PORT + BASE}`,
  );
const python = pythonAvailable();

/** The doc's fenced `sh` blocks in the section `heading`. */
function shellBlocks(heading: string): string[] {
  const start = DOC.indexOf(`\n## ${heading}\n`);
  expect(start).toBeGreaterThan(0);
  const end = DOC.indexOf('\n## ', start + 1);
  const section = DOC.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
}

interface Started {
  child: ChildProcess;
  out: () => string;
  stop(): Promise<void>;
}

/** Starts `npm start`'s program (built by the global setup) and waits until it streams the broker's log. */
async function npmStart(args: string[] = []): Promise<Started> {
  const child = spawn(process.execPath, [join(ROOT, 'dist/infra/start.js'), ...args], {
    cwd: ROOT,
    env: { ...process.env, CI: process.env['CI'] ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const deadline = Date.now() + 60_000;
  while (!out.includes('The broker’s log')) {
    if (child.exitCode !== null) throw new Error(`npm start exited ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) throw new Error(`npm start did not come up:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    out: () => out,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Runs shell text with bash in the repository, as pasted into a shell; resolves with stdout. */
function bash(script: string, env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      'bash',
      ['-euo', 'pipefail', '-c', script],
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: 90_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

async function tokeninfo(token: string, google = GOOGLE): Promise<Record<string, unknown>> {
  const res = await fetch(`${google}/tokeninfo?access_token=${encodeURIComponent(token)}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

const running: Started[] = [];
const scratch = mkdtempSync(join(tmpdir(), 'try-it-'));
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()));
  rmSync(scratch, { recursive: true, force: true });
});

describe('docs/calling.md, "Try it locally"', () => {
  it('shows exactly the commands npm start prints for its default ports', () => {
    const blocks = shellBlocks('Try it locally');
    expect(blocks[0]).toBe(
      "npm install\nnpm run setup:python   # once: .venv with Python's google-auth, for the Python line below\nnpm start              # the stand-ins, the broker and a demo; then it stays up, showing the broker's log\n",
    );
    const printed = tryItCommands({
      root: ROOT,
      brokerUrl: `http://127.0.0.1:${DEFAULT_PORT}`,
      audience: 'https://broker.local.test',
      callerMetadataHost: `127.0.0.1:${DEFAULT_PORT + 7}`,
      caller: 'billing@demo-project.iam.gserviceaccount.com',
      account: 'reporting@demo-project.iam.gserviceaccount.com',
      scopes: ['https://www.googleapis.com/auth/bigquery.readonly'],
      cloudPlatform: true,
    });
    // The printed block starts with `cd` into the clone; the doc says "in the clone's folder".
    expect(printed.split('\n')[0]).toBe(`cd ${ROOT.replace(/\/$/, '')}`);
    expect(`${printed.split('\n').slice(1).join('\n')}\n`).toBe(blocks[1]);
  });

  it('its commands, pasted into another shell, give tokens through curl, the CLI, Python google-auth with no scopes and Node; npm start shows each request; the saved file works after a restart', async () => {
    rmSync(join(ROOT, '.tmp/credentials.json'), { force: true });
    const first = await npmStart(['--port', String(BASE)]);
    running.push(first);
    expect(first.out()).toContain('End to end: OK');
    expect(first.out()).toContain(
      `export BROKER_URL=http://127.0.0.1:${BASE} BROKER_AUDIENCE=https://broker.local.test`,
    );
    expect(first.out()).toContain('export BROKER_JWKS_URL=');

    let commands = atBase(shellBlocks('Try it locally')[1] ?? '');
    expect(commands).toContain(`GCE_METADATA_HOST=127.0.0.1:${BASE + 7} `);
    if (!python) commands = commands.replace(/^\.venv\/bin\/python .*$/m, 'echo no-python');
    const out = await bash(commands);
    const tokens = [...out.matchAll(/ya29\.[\w-]+/g)].map((m) => m[0]);
    // curl's JSON, the CLI, Python, Node: in that order.
    expect(out).toMatch(/^\{"access_token":"ya29\./);
    expect(tokens).toHaveLength(python ? 4 : 3);
    const [curl, cli, fromPython, node] = python ? tokens : [tokens[0], tokens[1], undefined, tokens[2]];
    const BQ = 'https://www.googleapis.com/auth/bigquery.readonly';
    for (const t of [curl, cli, node])
      expect(await tokeninfo(t as string)).toMatchObject({
        email: 'reporting@demo-project.iam.gserviceaccount.com',
        scope: BQ,
      });
    expect(existsSync(join(ROOT, '.tmp/credentials.json'))).toBe(true);
    if (python) {
      expect(await tokeninfo(fromPython as string)).toMatchObject({
        email: 'reporting@demo-project.iam.gserviceaccount.com',
        scope: 'https://www.googleapis.com/auth/cloud-platform',
      });
      // npm start's own screen: Python's exchange at sts, with the scope the broker defaulted to.
      await expect
        .poll(() => first.out())
        .toMatch(
          /\[broker\] \d\d:\d\d:\d\d 200 POST \/sts token billing@demo-project\.iam\.gserviceaccount\.com → reporting@demo-project\.iam\.gserviceaccount\.com \[cloud-platform\] allow/,
        );
    }
    await expect
      .poll(() => first.out())
      .toMatch(
        /\[broker\] \d\d:\d\d:\d\d 200 POST \/token token billing@demo-project\.iam\.gserviceaccount\.com → reporting@/,
      );

    // A restart on the same ports: the credential file saved above works as it is.
    await first.stop();
    const second = await npmStart(['--port', String(BASE)]);
    running.push(second);
    const again = await bash(
      python
        ? `.venv/bin/python -c 'import google.auth, google.auth.transport.requests as r; c, _ = google.auth.default(); c.refresh(r.Request()); print(c.token)'`
        : `node -e "new (require('google-auth-library').GoogleAuth)().getAccessToken().then(console.log)"`,
      { GOOGLE_APPLICATION_CREDENTIALS: join(ROOT, '.tmp/credentials.json') },
    );
    expect(await tokeninfo(again.trim())).toMatchObject({
      email: 'reporting@demo-project.iam.gserviceaccount.com',
      scope: 'https://www.googleapis.com/auth/cloud-platform',
    });
    await second.stop();
  }, 150_000);
});

describe('npm start -- --policy FILE --port 0', () => {
  it("makes the policy's accounts at the stand-ins and prints commands for its first grant, which work", async () => {
    const policyFile = join(scratch, 'policy.json');
    const KEYLESS = 'exports@acme.iam.gserviceaccount.com';
    const KEYED = 'ledger@acme.iam.gserviceaccount.com';
    writeFileSync(
      policyFile,
      JSON.stringify({
        serviceAccounts: [
          { email: KEYLESS, keyless: true },
          { email: KEYED, key: 'file:keys/ledger.json' },
        ],
        grants: [
          {
            callers: ['job@acme.iam.gserviceaccount.com'],
            serviceAccounts: [KEYLESS],
            scopes: ['https://www.googleapis.com/auth/devstorage.read_only'],
          },
          {
            callers: ['job@acme.iam.gserviceaccount.com'],
            serviceAccounts: [KEYED],
            scopes: ['https://www.googleapis.com/auth/cloud-platform'],
          },
        ],
      }),
    );
    const started = await npmStart(['--policy', policyFile, '--port', '0', '--dir', scratch]);
    running.push(started);
    const out = started.out();
    expect(out).not.toContain('End to end');
    expect(out).toContain(
      `${KEYLESS}: keyless; token-broker@demo-project.iam.gserviceaccount.com may mint for it`,
    );
    expect(out).toContain(`${KEYED}: a new key in ${join(scratch, 'keys/ledger.json')}`);
    expect(JSON.parse(readFileSync(join(scratch, 'keys/ledger.json'), 'utf8'))).toMatchObject({
      client_email: KEYED,
    });
    // The printed block, up to the curl: the first grant's caller and account.
    const block = out.slice(out.indexOf('\ncd '), out.indexOf('\n# The CLI'));
    expect(block).toContain('for job@acme.iam.gserviceaccount.com');
    const json = JSON.parse((await bash(block)).trim()) as Record<string, unknown>;
    const google = /Google OAuth 2\.0 stand-in +(http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
    expect(await tokeninfo(json['access_token'] as string, google)).toMatchObject({
      email: KEYLESS,
      scope: 'https://www.googleapis.com/auth/devstorage.read_only',
    });
    await started.stop();
  }, 90_000);
});
