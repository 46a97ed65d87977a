/**
 * `npm start`'s demo: its policy, and its steps, each a small function over
 * the running stack that prints what it did and says whether it worked.
 * A new step (a tenant bounded to its own data, a GitHub-like job…) is one
 * more entry in `DEMO_STEPS`, with its accounts and grants in `demoPolicy`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GoogleAuth } from 'google-auth-library';
import { main as brokerToken } from '../../packages/client/src/cli/broker-token.js';
import type { BrokerProcess } from '../broker-process.js';
import type { GitHubActionsIssuer, GoogleStandIn } from '../google/server.js';
import type { SecretManagerStandIn } from '../secret-manager/server.js';

export const PROJECT = 'demo-project';
export const REPORTING = `reporting@${PROJECT}.iam.gserviceaccount.com`;
const BLUE = 'blue@tenant-blue.iam.gserviceaccount.com';
export const BILLING = `billing@${PROJECT}.iam.gserviceaccount.com`;
const SYNC_JOB = `sync-job@${PROJECT}.iam.gserviceaccount.com`;
const OPS = `ops@${PROJECT}.iam.gserviceaccount.com`;
export const BIGQUERY = 'https://www.googleapis.com/auth/bigquery.readonly';
const CALENDAR = 'https://www.googleapis.com/auth/calendar.readonly';
const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
export const ALICE = 'alice@demo.example';
const CALENDAR_SYNC = `calendar-sync@${PROJECT}.iam.gserviceaccount.com`;
const PLATFORM = `platform@${PROJECT}.iam.gserviceaccount.com`;
/** One keyless account for every other tenant, each tenant's token bounded to its own folder. */
const TENANTS = `tenants@${PROJECT}.iam.gserviceaccount.com`;
const GCS_RW = 'https://www.googleapis.com/auth/devstorage.read_write';
const BUCKET = 'demo-tenants';
/** The demo's GitHub repository: its workflow runs are callers `github:repo:demo/etl:…`. */
const REPO = { owner: 'demo', repo: 'etl' };

/** The demo's policy. `file:` keys are relative to the policy file's folder. */
export function demoPolicy(where: { githubIssuer: string; audience: string }): Record<string, unknown> {
  return {
    issuers: [
      {
        name: 'github',
        issuer: where.githubIssuer,
        audiences: [where.audience],
        claims: { repository_owner: REPO.owner },
      },
    ],
    serviceAccounts: [
      { email: REPORTING, key: `projects/${PROJECT}/secrets/reporting-key/versions/latest` },
      { email: BLUE, key: 'file:keys/blue.json', tenant: 'blue' },
      { email: CALENDAR_SYNC, keyless: true },
      { email: TENANTS, keyless: true, tenants: ['*'] },
    ],
    grants: [
      // cloud-platform too: Google's libraries ask for it when the code names no scopes.
      { callers: [BILLING], serviceAccounts: [REPORTING], scopes: [BIGQUERY, CLOUD_PLATFORM] },
      {
        callers: [SYNC_JOB],
        serviceAccounts: [CALENDAR_SYNC],
        scopes: [CALENDAR],
        subjects: ['*@demo.example'],
      },
      {
        callers: [PLATFORM],
        tenants: ['blue'],
        scopes: ['https://www.googleapis.com/auth/drive.file'],
        operations: ['token', 'jwt', 'idtoken'],
        audiences: ['https://drive.googleapis.com/'],
      },
      // Every tenant's Storage token, bounded to the tenant's own folder (docs/contract.md, "Tenants on shared accounts").
      {
        callers: [PLATFORM],
        tenants: ['*'],
        scopes: [GCS_RW],
        accessBoundary: [
          {
            resource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
            permissions: ['inRole:roles/storage.objectViewer'],
            condition: `resource.name.startsWith('projects/_/buckets/${BUCKET}/objects/{tenant}/')`,
          },
        ],
      },
      // The demo repository's workflows, on any branch, outside Google Cloud.
      {
        callers: [`github:repo:${REPO.owner}/${REPO.repo}:*`],
        serviceAccounts: [REPORTING],
        scopes: [BIGQUERY],
      },
    ],
    admins: [OPS],
    rateLimit: { requests: 600, windowSeconds: 60 },
  };
}

/** What every demo step gets: the running stack, and what earlier steps left for later ones. */
export interface DemoContext {
  google: GoogleStandIn;
  /** The GitHub-Actions-like issuer the demo's job gets its ID token from. */
  github: GitHubActionsIssuer;
  secretManager: SecretManagerStandIn;
  broker: BrokerProcess;
  audience: string;
  dir: string;
  /** Access tokens served so far, checked at tokeninfo by the last step. */
  tokens: string[];
  /** The first keyed token, which token exchange should find in the cache. */
  first?: string;
}

/** One step: a title, and a function that prints what it did and resolves to whether it worked. */
export interface DemoStep {
  title: string;
  run(ctx: DemoContext): Promise<boolean>;
}

/** A line indented under its step. */
const say = (s: string) => process.stdout.write(`  ${s}\n`);
const short = (token: string) => `${token.slice(0, 18)}…(${token.length} chars)`;

async function call(ctx: DemoContext, caller: string, body: unknown) {
  const idToken = await ctx.google.issueIdToken({ email: caller, audience: ctx.audience });
  const res = await fetch(`${ctx.broker.url}/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${idToken}` },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  const shown = { ...json };
  if (typeof shown['access_token'] === 'string') shown['access_token'] = short(shown['access_token']);
  say(
    `${res.status}  Cache-Status: ${res.headers.get('cache-status')}  X-Request-Id: ${res.headers.get('x-request-id')}`,
  );
  say(JSON.stringify(shown));
  return { res, json };
}

/** The demo, in order. */
export const DEMO_STEPS: DemoStep[] = [
  {
    title: `A microservice (${BILLING}) asks for a BigQuery token`,
    async run(ctx) {
      const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
      const first = await call(ctx, BILLING, body);
      const again = await fetch(`${ctx.broker.url}/token`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Authorization: `Bearer ${await ctx.google.issueIdToken({ email: BILLING, audience: ctx.audience })}`,
        },
        body: JSON.stringify(body),
      });
      await again.body?.cancel();
      say(`again → ${again.status}, Cache-Status: ${again.headers.get('cache-status')}`);
      const token = first.json['access_token'];
      if (typeof token === 'string') {
        ctx.first = token;
        ctx.tokens.push(token);
      }
      return first.res.status === 200 && again.headers.get('cache-status') === 'broker; hit';
    },
  },
  {
    title: `A scheduled job (${SYNC_JOB}) asks for a delegated token as ${ALICE}, through the keyless ${CALENDAR_SYNC}`,
    async run(ctx) {
      const secretReads = ctx.secretManager.stats.accessCalls;
      const delegated = await call(ctx, SYNC_JOB, {
        serviceAccount: CALENDAR_SYNC,
        scopes: [CALENDAR],
        subject: ALICE,
      });
      // The broker writes its log lines once per event-loop turn: give the line a moment to arrive.
      let keylessLine: string | undefined;
      for (let i = 0; i < 50 && keylessLine === undefined; i++) {
        keylessLine = ctx.broker.lines.find((l) => l.includes('"accountMode":"keyless"'));
        if (keylessLine === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      const reads = ctx.secretManager.stats.accessCalls - secretReads;
      say(
        `minted keyless: IAM signJwt calls ${ctx.google.stats.iamRequests.signJwt}, Secret Manager reads for it ${reads} (audit: accountMode ${keylessLine ? '"keyless"' : 'missing'})`,
      );
      const token = delegated.json['access_token'];
      if (typeof token === 'string') ctx.tokens.push(token);
      return delegated.res.status === 200 && keylessLine !== undefined && reads === 0;
    },
  },
  {
    title: "Google's own auth library (google-auth-library) through token exchange, with no broker code",
    async run(ctx) {
      const credentialFile = join(ctx.dir, 'billing-credentials.json');
      const subjectTokenFile = join(ctx.dir, 'billing-id-token');
      const idToken = await ctx.google.issueIdToken({ email: BILLING, audience: ctx.audience });
      writeFileSync(subjectTokenFile, `${idToken}\n`, { mode: 0o600 });
      const file = {
        type: 'external_account',
        audience: `//token-broker/serviceAccounts/${REPORTING}`,
        subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
        token_url: `${ctx.broker.url}/sts`,
        credential_source: { file: subjectTokenFile },
      };
      writeFileSync(credentialFile, `${JSON.stringify(file, null, 2)}\n`);
      say(`GOOGLE_APPLICATION_CREDENTIALS=${credentialFile}`);
      const exchanged = await new GoogleAuth({
        keyFilename: credentialFile,
        scopes: [BIGQUERY],
      }).getAccessToken();
      const same = exchanged === ctx.first;
      say(
        `GoogleAuth.getAccessToken() → ${exchanged ? short(exchanged) : 'nothing'} (${same ? 'the same token the microservice got: one cache entry' : 'a new token'})`,
      );
      if (exchanged) ctx.tokens.push(exchanged);
      return same;
    },
  },
  {
    title: `A multi-tenant platform (${PLATFORM}) gets a Storage token for tenant red, bounded to red's folder, from the one account ${TENANTS}`,
    async run(ctx) {
      const { storage } = ctx.google;
      storage.grantBucket(BUCKET, `serviceAccount:${TENANTS}`, 'roles/storage.objectAdmin');
      for (const tenant of ['red', 'green'])
        storage.putObject(BUCKET, `${tenant}/report.csv`, `${tenant}'s numbers\n`);
      const bounded = await call(ctx, PLATFORM, { tenant: 'red', scopes: [GCS_RW] });
      const token = bounded.json['access_token'];
      if (typeof token !== 'string') return false;
      const read = (object: string) =>
        fetch(`${storage.url}/storage/v1/b/${BUCKET}/o/${encodeURIComponent(object)}?alt=media`, {
          headers: { Authorization: `Bearer ${token}` },
        });
      const own = await read('red/report.csv');
      const other = await read('green/report.csv');
      say(`Storage, red/report.csv with red's token   → ${own.status} ${JSON.stringify(await own.text())}`);
      say(
        `Storage, green/report.csv with red's token → ${other.status} (the boundary allows objects/red/ only)`,
      );
      const source = ctx.google.sts.issued.find((t) => t.token === token)?.sourceToken;
      say(
        `the account's own token, exchanged at STS for red's: ${source === undefined ? 'unknown' : 'never served'}`,
      );
      return own.status === 200 && other.status === 403 && source !== undefined && source !== token;
    },
  },
  {
    title: `A GitHub Actions job of ${REPO.owner}/${REPO.repo}, outside Google Cloud, gets a token with its own OIDC token`,
    async run(ctx) {
      // What the job's step runs: the CLI reads the job's ID-token URL and request token from its environment.
      const file = join(ctx.dir, 'github-credentials.json');
      const cliOut: string[] = [];
      const code = await brokerToken(
        [
          'credential-config',
          REPORTING,
          '--url',
          ctx.broker.url,
          '--github-actions',
          '--broker-audience',
          ctx.audience,
          '--output-file',
          file,
        ],
        {
          ACTIONS_ID_TOKEN_REQUEST_URL: ctx.github.idTokenRequestUrl,
          ACTIONS_ID_TOKEN_REQUEST_TOKEN: ctx.github.requestToken,
        },
        (s) => cliOut.push(s),
        (s) => cliOut.push(s),
      );
      say(`broker-token credential-config ${REPORTING} --github-actions … → ${file} (exit ${code})`);
      if (code !== 0) {
        for (const l of cliOut) say(l);
        return false;
      }
      const source = (JSON.parse(readFileSync(file, 'utf8')) as { credential_source?: { url?: string } })
        .credential_source;
      say(`its subject token comes from ${source?.url?.replace(/\?.*$/, '?…&audience=…')}`);
      const token = await new GoogleAuth({ keyFilename: file, scopes: [BIGQUERY] }).getAccessToken();
      let line: string | undefined;
      for (let i = 0; i < 50 && line === undefined; i++) {
        line = ctx.broker.lines.find(
          (l) => l.includes('"issuer":"github"') && l.includes('"decision":"allow"'),
        );
        if (line === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      const audit =
        line === undefined ? undefined : (JSON.parse(line) as { audit?: Record<string, unknown> }).audit;
      say(
        `GoogleAuth.getAccessToken() → ${token ? short(token) : 'nothing'}; audit caller ${String(audit?.['caller'])}`,
      );
      if (token) ctx.tokens.push(token);
      return (
        typeof token === 'string' &&
        String(audit?.['caller']).startsWith(`github:repo:${REPO.owner}/${REPO.repo}:`)
      );
    },
  },
  {
    title: "Checking the tokens at the Google stand-in's tokeninfo",
    async run(ctx) {
      let ok = ctx.tokens.length > 0;
      for (const token of ctx.tokens) {
        const info = await fetch(`${ctx.google.tokeninfoUrl}?access_token=${encodeURIComponent(token)}`);
        say(`${info.status} ${JSON.stringify(await info.json())}`);
        ok &&= info.status === 200;
      }
      return ok;
    },
  },
];
