/**
 * `npm start`: the whole broker on a laptop. Starts the Google OAuth and
 * Secret Manager stand-ins, stores demo service-account keys, writes a demo
 * policy, starts the broker under the real functions framework, and shows a
 * plain and a delegated token being requested and served end to end.
 *
 *   npm start             # stays up for curl; Ctrl-C stops everything
 *   npm start -- --once   # runs the demo and exits (used by the tests)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import { credentials } from '@grpc/grpc-js';
import { GoogleAuth, PassThroughClient } from 'google-auth-library';
import { ROOT, startBrokerProcess } from './broker-process.js';
import { generateServiceAccountKey } from './google/keys.js';
import { startGoogleStandIn } from './google/server.js';
import { type LocalSharedCache, startLocalSharedCache } from './local-shared-cache.js';
import { findRedisServer } from './redis/redis-server.js';
import { startSecretManagerStandIn } from './secret-manager/server.js';

const once = process.argv.includes('--once');
const PROJECT = 'demo-project';
const REPORTING = `reporting@${PROJECT}.iam.gserviceaccount.com`;
const BLUE = `blue@tenant-blue.iam.gserviceaccount.com`;
const BILLING = `billing@${PROJECT}.iam.gserviceaccount.com`;
const SYNC_JOB = `sync-job@${PROJECT}.iam.gserviceaccount.com`;
const OPS = `ops@${PROJECT}.iam.gserviceaccount.com`;
const BIGQUERY = 'https://www.googleapis.com/auth/bigquery.readonly';
const CALENDAR = 'https://www.googleapis.com/auth/calendar.readonly';
const ALICE = 'alice@demo.example';
/** The broker's own identity (its metadata server's), and the keyless account the scheduled job acts through. */
const BROKER_SA = `token-broker@${PROJECT}.iam.gserviceaccount.com`;
const CALENDAR_SYNC = `calendar-sync@${PROJECT}.iam.gserviceaccount.com`;

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (s: string) => console.log(`\n${bold(`▸ ${s}`)}`);
const short = (token: string) => `${token.slice(0, 18)}…(${token.length} chars)`;

async function main(): Promise<void> {
  const dir = join(ROOT, '.tmp', 'demo');
  mkdirSync(join(dir, 'keys'), { recursive: true });

  step('Starting the local stand-ins for Google');
  const google = await startGoogleStandIn();
  const secretManager = await startSecretManagerStandIn();
  console.log(
    `  Google OAuth 2.0 stand-in   ${google.url}  (token ${google.tokenUrl}, JWKS ${google.jwksUrl})`,
  );
  console.log(`  Secret Manager stand-in     ${secretManager.host}  (plaintext gRPC)`);
  let cache: LocalSharedCache | undefined;
  if (findRedisServer() !== undefined) {
    cache = await startLocalSharedCache();
    console.log(
      `  Upstash REST stand-in       ${cache.upstash.url}  (over redis-server ${cache.redis.url}): the shared cache`,
    );
  } else {
    console.log(
      '  redis-server not found: the broker caches tokens in its process only (apt-get install -y redis-server for the shared cache)',
    );
  }

  step('Generating demo service-account keys');
  const reporting = generateServiceAccountKey({
    email: REPORTING,
    projectId: PROJECT,
    tokenUri: google.tokenUrl,
  });
  const blue = generateServiceAccountKey({
    email: BLUE,
    projectId: 'tenant-blue',
    tokenUri: google.tokenUrl,
  });
  for (const k of [reporting, blue]) {
    google.registerServiceAccount({
      email: k.json.client_email,
      clientId: k.json.client_id,
      keyId: k.json.private_key_id,
      publicKeyPem: k.publicKeyPem,
    });
  }
  google.addUser(ALICE);
  google.allowDelegation(REPORTING, [CALENDAR]);

  step('Setting up a keyless account: no key anywhere, IAM signs for it');
  const metadata = await google.startMetadataServer({ email: BROKER_SA, projectId: PROJECT });
  google.registerKeylessAccount(CALENDAR_SYNC);
  google.grantTokenCreator(CALENDAR_SYNC, BROKER_SA);
  google.allowDelegation(CALENDAR_SYNC, [CALENDAR]);
  console.log(`  metadata server stand-in    ${metadata.url}  (the broker runs as ${BROKER_SA})`);
  console.log(`  IAM Credentials stand-in    ${google.iamUrl}`);
  console.log(
    `  ${CALENDAR_SYNC}: keyless; ${BROKER_SA} holds roles/iam.serviceAccountTokenCreator on it alone`,
  );

  // The reporting key goes into Secret Manager through the official client, as an operator would.
  const client = new SecretManagerServiceClient({
    apiEndpoint: secretManager.host.split(':')[0] ?? '127.0.0.1',
    port: Number(secretManager.host.split(':')[1]),
    sslCreds: credentials.createInsecure(),
    authClient: new PassThroughClient(),
  });
  const [secret] = await client.createSecret({
    parent: `projects/${PROJECT}`,
    secretId: 'reporting-key',
    secret: { replication: { automatic: {} } },
  });
  await client.addSecretVersion({
    parent: secret.name ?? '',
    payload: { data: Buffer.from(JSON.stringify(reporting.json)) },
  });
  await client.close();
  console.log(`  ${REPORTING} → Secret Manager projects/${PROJECT}/secrets/reporting-key`);
  // The tenant's key is a file, as local runs may use.
  writeFileSync(join(dir, 'keys', 'blue.json'), JSON.stringify(blue.json, null, 2), { mode: 0o600 });
  console.log(`  ${BLUE} → file:keys/blue.json (tenant "blue")`);

  step('Writing the demo policy');
  const policy = {
    serviceAccounts: [
      { email: REPORTING, key: `projects/${PROJECT}/secrets/reporting-key/versions/latest` },
      { email: BLUE, key: 'file:keys/blue.json', tenant: 'blue' },
      { email: CALENDAR_SYNC, keyless: true },
    ],
    grants: [
      { callers: [BILLING], serviceAccounts: [REPORTING], scopes: [BIGQUERY] },
      {
        callers: [SYNC_JOB],
        serviceAccounts: [CALENDAR_SYNC],
        scopes: [CALENDAR],
        subjects: ['*@demo.example'],
      },
      {
        callers: [`platform@${PROJECT}.iam.gserviceaccount.com`],
        tenants: ['*'],
        scopes: ['https://www.googleapis.com/auth/drive.file'],
        operations: ['token', 'jwt', 'idtoken'],
        audiences: ['https://drive.googleapis.com/'],
      },
    ],
    admins: [OPS],
    rateLimit: { requests: 600, windowSeconds: 60 },
  };
  const policyFile = join(dir, 'policy.json');
  writeFileSync(policyFile, `${JSON.stringify(policy, null, 2)}\n`);
  console.log(`  ${policyFile}`);

  step('Starting the broker (functions-framework --target=broker)');
  const audience = 'https://broker.local.test';
  const broker = await startBrokerProcess({
    target: 'broker',
    env: {
      BROKER_POLICY_FILE: policyFile,
      BROKER_AUDIENCE: audience,
      BROKER_JWKS_URL: google.jwksUrl,
      BROKER_ISSUERS: google.issuer,
      BROKER_TOKEN_URL: google.tokenUrl,
      SECRET_MANAGER_EMULATOR_HOST: secretManager.host,
      GCE_METADATA_HOST: metadata.host,
      BROKER_IAM_CREDENTIALS_URL: google.iamUrl,
      ...cache?.env,
    },
  });
  console.log(`  ${broker.url}  (POST /token, /jwt, /idtoken, /sts, /admin/purge)`);

  const call = async (caller: string, path: string, body: unknown) => {
    const idToken = await google.issueIdToken({ email: caller, audience });
    const res = await fetch(`${broker.url}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${idToken}` },
      body: JSON.stringify(body),
    });
    return { res, json: (await res.json()) as Record<string, unknown>, idToken };
  };

  step(`A microservice (${BILLING}) asks for a BigQuery token`);
  const plainBody = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
  const first = await call(BILLING, '/token', plainBody);
  report(first.res, first.json);
  const again = await call(BILLING, '/token', plainBody);
  console.log(`  again → ${again.res.status}, Cache-Status: ${again.res.headers.get('cache-status')}`);

  step(
    `A scheduled job (${SYNC_JOB}) asks for a delegated token as ${ALICE}, through the keyless ${CALENDAR_SYNC}`,
  );
  const secretReads = secretManager.stats.accessCalls;
  const delegated = await call(SYNC_JOB, '/token', {
    serviceAccount: CALENDAR_SYNC,
    scopes: [CALENDAR],
    subject: ALICE,
  });
  report(delegated.res, delegated.json);
  // The broker writes its log lines once per event-loop turn: give the line a moment to arrive.
  let keylessLine: string | undefined;
  for (let i = 0; i < 50 && keylessLine === undefined; i++) {
    keylessLine = broker.lines.find((l) => l.includes('"accountMode":"keyless"'));
    if (keylessLine === undefined) await new Promise((r) => setTimeout(r, 20));
  }
  console.log(
    `  minted keyless: IAM signJwt calls ${google.stats.iamRequests.signJwt}, Secret Manager reads for it ${secretManager.stats.accessCalls - secretReads} (audit: accountMode ${keylessLine ? '"keyless"' : 'missing'})`,
  );

  step("Google's own auth library (google-auth-library) through token exchange, with no broker code");
  const credentialFile = join(dir, 'billing-credentials.json');
  const subjectTokenFile = join(dir, 'billing-id-token');
  writeFileSync(subjectTokenFile, `${await google.issueIdToken({ email: BILLING, audience })}\n`, {
    mode: 0o600,
  });
  writeFileSync(
    credentialFile,
    `${JSON.stringify(
      {
        type: 'external_account',
        audience: `//token-broker/serviceAccounts/${REPORTING}`,
        subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
        token_url: `${broker.url}/sts`,
        credential_source: { file: subjectTokenFile },
      },
      null,
      2,
    )}\n`,
  );
  console.log(`  GOOGLE_APPLICATION_CREDENTIALS=${credentialFile}`);
  const exchanged = await new GoogleAuth({
    keyFilename: credentialFile,
    scopes: [BIGQUERY],
  }).getAccessToken();
  console.log(
    `  GoogleAuth.getAccessToken() → ${exchanged ? short(exchanged) : 'nothing'} (${exchanged === first.json['access_token'] ? 'the same token the microservice got: one cache entry' : 'a new token'})`,
  );

  step("Checking the tokens at the Google stand-in's tokeninfo");
  for (const token of [first.json['access_token'], delegated.json['access_token'], exchanged]) {
    const info = await fetch(`${google.tokeninfoUrl}?access_token=${encodeURIComponent(String(token))}`);
    console.log(`  ${info.status} ${JSON.stringify(await info.json())}`);
  }

  const ok =
    first.res.status === 200 &&
    again.res.headers.get('cache-status') === 'broker; hit' &&
    delegated.res.status === 200 &&
    keylessLine !== undefined &&
    secretManager.stats.accessCalls === secretReads &&
    exchanged === first.json['access_token'];
  step(ok ? 'End to end: OK' : 'End to end: FAILED');
  console.log(
    '\nRepeat the delegated request yourself (the caller ID token is a local one, valid for an hour):\n',
  );
  console.log(
    `curl -sS -X POST ${broker.url}/token \\\n  -H 'Content-Type: application/json' \\\n  -H 'Authorization: Bearer ${delegated.idToken}' \\\n  -d '${JSON.stringify({ serviceAccount: CALENDAR_SYNC, scopes: [CALENDAR], subject: ALICE })}'`,
  );
  console.log(
    `\nMint a caller ID token for another caller:\n\ncurl -sS -X POST ${google.url}/local/idtoken -H 'Content-Type: application/json' -d '{"email":"${BILLING}","audience":"${audience}"}'`,
  );
  const audits = broker.lines.filter((l) => l.includes('"audit"')).slice(-1);
  console.log(
    `\nThe broker's audit line for the last request (structured JSON for Cloud Logging):\n${audits.join('\n')}`,
  );

  const shutdown = async () => {
    await broker.stop();
    await secretManager.close();
    await google.close();
    await cache?.close();
  };
  if (once || !ok) {
    await shutdown();
    process.exitCode = ok ? 0 : 1;
    return;
  }
  console.log('\nThe broker and stand-ins keep running. Ctrl-C stops them.');
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      void shutdown().then(() => process.exit(0));
    });
  }
}

function report(res: Response, json: Record<string, unknown>): void {
  const shown = { ...json };
  if (typeof shown['access_token'] === 'string') shown['access_token'] = short(shown['access_token']);
  console.log(
    `  ${res.status}  Cache-Status: ${res.headers.get('cache-status')}  X-Request-Id: ${res.headers.get('x-request-id')}`,
  );
  console.log(`  ${JSON.stringify(shown)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
