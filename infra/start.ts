/**
 * `npm start`: the whole broker on a laptop. Starts the stand-ins for Google
 * (OAuth, IAM, STS, Storage, metadata servers) and Secret Manager on fixed
 * ports, makes the policy's accounts exist there, starts the broker under
 * the real functions framework, runs the demo (`start/demo.ts`), prints the
 * commands to drive it from another shell (`start/try-it.ts`), and then
 * streams the broker's log lines, one short line per request.
 *
 *   npm start                         # the demo policy; broker on 8480, stand-ins on 8481…
 *   npm start -- --port 9000          # broker on 9000, stand-ins on 9001… (0: random ports)
 *   npm start -- --policy my.json     # your policy: its accounts are made up at the stand-ins
 *   npm start -- --once               # runs the demo and exits (used by the tests)
 *   npm start -- --dir DIR            # the demo's policy, keys and log there, not in .tmp/demo
 */
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { ROOT, startBrokerProcess } from './broker-process.js';
import { startGoogleStandIn } from './google/server.js';
import { type LocalSharedCache, startLocalSharedCache } from './local-shared-cache.js';
import { findRedisServer } from './redis/redis-server.js';
import { startSecretManagerStandIn } from './secret-manager/server.js';
import { provisionAccounts } from './start/accounts.js';
import {
  ALICE,
  BIGQUERY,
  BILLING,
  DEMO_STEPS,
  type DemoContext,
  demoPolicy,
  PROJECT,
  REPORTING,
} from './start/demo.js';
import { compactLogLine } from './start/log-lines.js';
import { parseStartOptions, type StartOptions } from './start/options.js';
import { tryItCommands } from './start/try-it.js';

/** The broker's audience locally: what callers' ID tokens must be for. */
const AUDIENCE = 'https://broker.local.test';
/** The broker's own identity (its metadata server's): keyless accounts grant it Token Creator. */
const BROKER_SA = `token-broker@${PROJECT}.iam.gserviceaccount.com`;
const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const print = (s = '') => process.stdout.write(`${s}\n`);
const step = (s: string) => print(`\n${bold(`▸ ${s}`)}`);

/** Fails with one message naming every busy port, before anything starts. */
async function checkPortsFree(ports: Record<string, number>): Promise<void> {
  const busy: string[] = [];
  for (const [service, port] of Object.entries(ports)) {
    if (port === 0) continue;
    const free = await new Promise<boolean>((done) => {
      const s = createServer();
      s.once('error', () => done(false));
      s.listen(port, '127.0.0.1', () => s.close(() => done(true)));
    });
    if (!free) busy.push(`${port} (${service})`);
  }
  if (busy.length > 0)
    throw new Error(
      `port ${busy.join(', ')} in use: another npm start? Stop it, or choose other ports: npm start -- --port N`,
    );
}

/** The caller, account and scopes the printed commands use: the demo's, or a policy's first plain grant. */
function exampleOf(policy: Record<string, unknown>, demo: boolean) {
  if (demo) return { caller: BILLING, account: REPORTING, scopes: [BIGQUERY], cloudPlatform: true };
  const plain = (v: unknown) =>
    Array.isArray(v) ? v.find((s) => typeof s === 'string' && !s.includes('*')) : undefined;
  for (const g of Array.isArray(policy['grants'])
    ? (policy['grants'] as Array<Record<string, unknown>>)
    : []) {
    const caller = plain(g['callers']) as string | undefined;
    const account = plain(g['serviceAccounts']) as string | undefined;
    const scopes = (Array.isArray(g['scopes']) ? g['scopes'] : []).filter(
      (s): s is string => typeof s === 'string',
    );
    if (caller && account && scopes.length > 0 && !scopes.some((s) => s.includes('*')))
      return { caller, account, scopes, cloudPlatform: scopes.includes(CLOUD_PLATFORM) };
  }
  return undefined;
}

async function main(options: StartOptions): Promise<void> {
  const { ports } = options;
  await checkPortsFree(ports);
  const dir = options.dir === undefined ? join(ROOT, '.tmp', 'demo') : resolve(options.dir);
  mkdirSync(dir, { recursive: true });

  step('Starting the local stand-ins for Google and Secret Manager');
  const google = await startGoogleStandIn({
    port: ports.google,
    iamPort: ports.iam,
    stsPort: ports.sts,
    storagePort: ports.storage,
  });
  const secretManager = await startSecretManagerStandIn({ port: ports.secretManager });
  const github = await google.startGitHubIssuer({ port: ports.github, run: { owner: 'demo', repo: 'etl' } });
  const brokerMetadata = await google.startMetadataServer({
    email: BROKER_SA,
    projectId: PROJECT,
    port: ports.brokerMetadata,
  });
  print(`  Google OAuth 2.0 stand-in   ${google.url}  (token, JWKS ${google.jwksUrl}, tokeninfo)`);
  print(`  IAM Credentials stand-in    ${google.iamUrl}`);
  print(`  STS and Storage stand-ins   ${google.sts.url}, ${google.storage.url}`);
  print(`  GitHub Actions OIDC issuer  ${github.url}  (a job's ID token, outside Google Cloud)`);
  print(`  Secret Manager stand-in     ${secretManager.host}  (plaintext gRPC)`);
  print(`  the broker's metadata server ${brokerMetadata.url}  (it runs as ${BROKER_SA})`);
  let cache: LocalSharedCache | undefined;
  if (findRedisServer() !== undefined) {
    cache = await startLocalSharedCache();
    print(
      `  Upstash REST stand-in       ${cache.upstash.url}  (over redis-server ${cache.redis.url}): the shared cache`,
    );
  } else {
    print(
      '  redis-server not found: the broker caches tokens in its process only (apt-get install -y redis-server for the shared cache)',
    );
  }

  const demo = options.policyFile === undefined;
  const policyFile = demo ? join(dir, 'policy.json') : resolve(options.policyFile as string);
  let policy: Record<string, unknown>;
  if (demo) {
    step('Writing the demo policy, and making its accounts at the stand-ins');
    policy = demoPolicy({ githubIssuer: github.issuer, audience: AUDIENCE });
    // Whole or not at all: a broker still running from an earlier start may read it.
    writeFileSync(`${policyFile}.tmp`, `${JSON.stringify(policy, null, 2)}\n`);
    renameSync(`${policyFile}.tmp`, policyFile);
  } else {
    step(`Your policy ${policyFile}: making its accounts at the stand-ins`);
    policy = JSON.parse(readFileSync(policyFile, 'utf8')) as Record<string, unknown>;
  }
  print(`  ${policyFile}`);
  for (const line of provisionAccounts(policy, {
    google,
    secretManager,
    policyDir: dirname(policyFile),
    brokerIdentity: BROKER_SA,
  }))
    print(`  ${line}`);
  if (demo) google.addUser(ALICE);

  const example = exampleOf(policy, demo);
  const callerMetadata = await google.startMetadataServer({
    email: example?.caller ?? BILLING,
    projectId: PROJECT,
    port: ports.callerMetadata,
  });
  print(
    `  the caller's metadata server ${callerMetadata.url}  (a workload running as ${callerMetadata.email})`,
  );

  /** What the broker is configured with (the shared cache's secrets aside), printed again at the end. */
  const brokerEnv = {
    BROKER_AUDIENCE: AUDIENCE,
    BROKER_POLICY_FILE: policyFile,
    BROKER_JWKS_URL: google.jwksUrl,
    BROKER_ISSUERS: google.issuer,
    BROKER_TOKEN_URL: google.tokenUrl,
    SECRET_MANAGER_EMULATOR_HOST: secretManager.host,
    GCE_METADATA_HOST: brokerMetadata.host,
    BROKER_IAM_CREDENTIALS_URL: google.iamUrl,
    BROKER_STS_URL: google.sts.tokenUrl,
    // The GitHub-like issuer is http on loopback; the flag admits that, and only that (tests and npm start).
    BROKER_ALLOW_LOOPBACK_ISSUERS: 'true',
  };

  step('Starting the broker (functions-framework --target=broker)');
  const logFile = join(dir, 'broker.log');
  writeFileSync(logFile, '');
  const broker = await startBrokerProcess({
    target: 'broker',
    ...(ports.broker === 0 ? {} : { port: ports.broker }),
    env: { ...brokerEnv, ...cache?.env },
  });
  print(`  ${broker.url}  (POST /token, /jwt, /idtoken, /sts, /admin/purge)  audience ${AUDIENCE}`);

  let ok = true;
  if (demo) {
    const ctx: DemoContext = { google, github, secretManager, broker, audience: AUDIENCE, dir, tokens: [] };
    for (const s of DEMO_STEPS) {
      step(s.title);
      const worked = await s.run(ctx);
      if (!worked) print('  (this step did not do what it should)');
      ok &&= worked;
    }
    step(ok ? 'End to end: OK' : 'End to end: FAILED');
    const audits = broker.lines.filter((l) => l.includes('"audit"')).slice(-1);
    print(
      `\nThe broker's audit line for the last request (structured JSON for Cloud Logging):\n${audits.join('\n')}`,
    );
  }

  print(
    `\n${bold('Try it from another shell')} (the ports stay the same at the next npm start${ports.broker === 0 ? ' with a fixed --port' : ''}):\n`,
  );
  if (example)
    print(
      tryItCommands({
        root: ROOT,
        brokerUrl: broker.url,
        audience: AUDIENCE,
        callerMetadataHost: callerMetadata.host,
        ...example,
      }),
    );
  else
    print(`  (no grant of your policy names one caller, one account and plain scopes to show commands for)`);
  print(`\nThe variables a broker needs, to run it yourself against these stand-ins:\n`);
  for (const [name, value] of Object.entries(brokerEnv)) print(`export ${name}=${value}`);

  const shutdown = async () => {
    await broker.stop();
    await secretManager.close();
    await google.close();
    await cache?.close();
  };
  if (options.once || !ok) {
    await shutdown();
    process.exitCode = ok ? 0 : 1;
    return;
  }
  // From now on every line the broker writes is shown, short, and kept whole in broker.log.
  appendFileSync(logFile, broker.lines.map((l) => `${l}\n`).join(''));
  let partial = '';
  const stream = (chunk: Buffer) => {
    const text = partial + chunk.toString('utf8');
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines.filter((l) => l.trim() !== '')) {
      appendFileSync(logFile, `${line}\n`);
      print(`[broker] ${compactLogLine(line)}`);
    }
  };
  broker.child.stdout?.on('data', stream);
  broker.child.stderr?.on('data', stream);
  print(
    `\n${bold('The broker’s log')} (one line per request; every JSON line in ${logFile}). Ctrl-C stops everything.`,
  );
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      void shutdown().then(() => process.exit(0));
    });
  }
}

let options: StartOptions;
try {
  options = parseStartOptions(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
}
main(options).catch((err: unknown) => {
  process.stderr.write(`npm start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
