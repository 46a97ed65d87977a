/**
 * A local stack for tests and benchmarks: the Google and Secret Manager
 * stand-ins, three demo service accounts (one key in Secret Manager, two in
 * files), the contract's example policy, and broker processes started on it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FunctionTarget } from '../functions/handlers.js';
import { type BrokerProcess, startBrokerProcess } from './broker-process.js';
import { captureSecret } from './capture.js';
import { generateServiceAccountKey } from './google/keys.js';
import type { MetadataServer } from './google/metadata.js';
import { type GoogleStandIn, startGoogleStandIn } from './google/server.js';
import type { InProcessBroker } from './in-process-broker.js';
import { type SecretManagerStandIn, startSecretManagerStandIn } from './secret-manager/server.js';

export const PROJECT = 'acme';
export const REPORTING = 'reporting@acme.iam.gserviceaccount.com';
export const BLUE = 'blue@tenant-blue.iam.gserviceaccount.com';
export const GREEN = 'green@tenant-green.iam.gserviceaccount.com';
export const BILLING = 'billing@acme.iam.gserviceaccount.com';
export const SYNC_JOB = 'sync-job@acme.iam.gserviceaccount.com';
export const PLATFORM = 'platform@acme.iam.gserviceaccount.com';
export const OPS = 'ops@acme.iam.gserviceaccount.com';
export const BIGQUERY = 'https://www.googleapis.com/auth/bigquery.readonly';
export const CALENDAR = 'https://www.googleapis.com/auth/calendar.readonly';
export const DRIVE = 'https://www.googleapis.com/auth/drive.file';
export const AUDIENCE = 'https://broker.test.example';
/** The broker's own service account: what its metadata server says it runs as, and what IAM checks for keyless accounts. */
export const BROKER_IDENTITY = 'token-broker@acme.iam.gserviceaccount.com';
/** A keyless account: no key anywhere, IAM mints for it (the broker holds Token Creator on it). */
export const KEYLESS = 'keyless-reports@acme.iam.gserviceaccount.com';
/** A keyless tenant's account. */
export const VIOLET = 'violet@tenant-violet.iam.gserviceaccount.com';
/** A keyless account reached through an impersonation chain (broker → HOP → CHAINED). */
export const CHAINED = 'chained@acme.iam.gserviceaccount.com';
export const HOP = 'hop@acme.iam.gserviceaccount.com';
/** A keyless account in the policy on which IAM grants the broker nothing: IAM answers 403. */
export const UNGRANTED = 'ungranted@acme.iam.gserviceaccount.com';
export const REPORTS_AUDIENCE = 'https://reports.example.com';

/** The contract's example policy, with keys in the Secret Manager stand-in and in files. */
export function examplePolicy(): Record<string, unknown> {
  return {
    serviceAccounts: [
      { email: REPORTING, key: `projects/${PROJECT}/secrets/reporting-key/versions/latest` },
      { email: BLUE, key: 'file:keys/blue.json', tenant: 'blue' },
      { email: GREEN, key: 'file:keys/green.json', tenant: 'green' },
      { email: KEYLESS, keyless: true },
      { email: VIOLET, keyless: true, tenant: 'violet' },
      { email: CHAINED, keyless: true, delegates: [HOP] },
      { email: UNGRANTED, keyless: true },
    ],
    grants: [
      { callers: [BILLING], serviceAccounts: [REPORTING], scopes: [BIGQUERY] },
      { callers: [SYNC_JOB], serviceAccounts: [REPORTING], scopes: [CALENDAR], subjects: ['*@acme.com'] },
      {
        callers: [BILLING],
        serviceAccounts: [KEYLESS, CHAINED, UNGRANTED],
        scopes: [BIGQUERY],
        operations: ['token', 'jwt', 'idtoken'],
        audiences: [REPORTS_AUDIENCE],
      },
      { callers: [SYNC_JOB], serviceAccounts: [KEYLESS], scopes: [CALENDAR], subjects: ['*@acme.com'] },
      {
        callers: [PLATFORM],
        tenants: ['*'],
        scopes: [DRIVE],
        operations: ['token', 'jwt', 'idtoken'],
        audiences: ['https://drive.googleapis.com/'],
      },
    ],
    admins: [OPS],
  };
}

/** The stand-ins, demo keys and a policy directory, shared by broker processes. */
export interface Stack {
  google: GoogleStandIn;
  /** The metadata server of the broker's instances (their own identity, for keyless accounts). */
  metadata: MetadataServer;
  secretManager: SecretManagerStandIn;
  dir: string;
  policyFile: string;
  env: Record<string, string>;
  callerToken(email: string, overrides?: { audience?: string }): Promise<string>;
  /** Rotates an account's key as an operator would: a new key in its secret, then the old one deleted at Google. */
  rotateKey(email: string): void;
  /** A broker process of the deployed bundle under the real functions framework. */
  startBroker(
    target?: string,
    env?: Record<string, string | undefined>,
    options?: { logFile?: string },
  ): Promise<BrokerProcess>;
  /** A broker built in this process (`in-process-broker.ts`): the same runtime and handlers, no process. */
  serveBroker(target?: FunctionTarget, env?: Record<string, string | undefined>): Promise<InProcessBroker>;
  close(): Promise<void>;
}

/** Starts the Google and Secret Manager stand-ins and stores the example accounts' keys. */
export async function startStack(
  options: {
    policy?: Record<string, unknown>;
    accessTokenLifetimeSeconds?: number;
    /** How far Google's clock is ahead of ours (negative: behind), to test clock skew. */
    googleClockOffsetSeconds?: number;
    /** See GoogleStandInOptions.extraAudiences. */
    extraAudiences?: readonly string[];
  } = {},
): Promise<Stack> {
  const offsetMs = (options.googleClockOffsetSeconds ?? 0) * 1000;
  const google = await startGoogleStandIn({
    ...(options.accessTokenLifetimeSeconds === undefined
      ? {}
      : { accessTokenLifetimeSeconds: options.accessTokenLifetimeSeconds }),
    ...(offsetMs === 0 ? {} : { now: () => Date.now() + offsetMs }),
    onSecret: captureSecret,
    ...(options.extraAudiences ? { extraAudiences: options.extraAudiences } : {}),
  });
  const secretManager = await startSecretManagerStandIn();
  const dir = mkdtempSync(join(tmpdir(), 'broker-test-'));
  const keysDir = join(dir, 'keys');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(keysDir);
  const accounts = [
    { email: REPORTING, projectId: PROJECT },
    { email: BLUE, projectId: 'tenant-blue' },
    { email: GREEN, projectId: 'tenant-green' },
  ];
  const keyIds = new Map<string, string>();
  const storeKey = (a: { email: string; projectId: string }) => {
    const k = generateServiceAccountKey({
      email: a.email,
      projectId: a.projectId,
      tokenUri: google.tokenUrl,
    });
    google.registerServiceAccount({
      email: a.email,
      clientId: k.json.client_id,
      keyId: k.json.private_key_id,
      publicKeyPem: k.publicKeyPem,
    });
    if (a.email === REPORTING)
      secretManager.put(`projects/${PROJECT}/secrets/reporting-key`, JSON.stringify(k.json));
    else writeFileSync(join(keysDir, `${a.email.split('@')[0]}.json`), JSON.stringify(k.json));
    captureSecret(k.json.private_key);
    const old = keyIds.get(a.email);
    keyIds.set(a.email, k.json.private_key_id);
    if (old !== undefined) google.deleteKey(old);
  };
  for (const a of accounts) storeKey(a);
  google.addUser('alice@acme.com');
  google.allowDelegation(REPORTING, [CALENDAR]);
  // Keyless accounts: IAM signs for them, and grants the broker Token Creator on each (never project-wide).
  for (const email of [KEYLESS, VIOLET, CHAINED, HOP, UNGRANTED]) google.registerKeylessAccount(email);
  for (const email of [KEYLESS, VIOLET, HOP]) google.grantTokenCreator(email, BROKER_IDENTITY);
  google.grantTokenCreator(CHAINED, HOP);
  google.allowDelegation(KEYLESS, [CALENDAR]);
  const metadata = await google.startMetadataServer({ email: BROKER_IDENTITY, projectId: PROJECT });
  const policyFile = join(dir, 'policy.json');
  writeFileSync(policyFile, JSON.stringify(options.policy ?? examplePolicy()));
  const env: Record<string, string> = {
    BROKER_POLICY_FILE: policyFile,
    BROKER_AUDIENCE: AUDIENCE,
    BROKER_JWKS_URL: google.jwksUrl,
    BROKER_ISSUERS: google.issuer,
    BROKER_TOKEN_URL: google.tokenUrl,
    SECRET_MANAGER_EMULATOR_HOST: secretManager.host,
    GCE_METADATA_HOST: metadata.host,
    BROKER_IAM_CREDENTIALS_URL: google.iamUrl,
    BROKER_STS_URL: google.sts.tokenUrl,
  };
  const brokers: Array<{ stop(): Promise<void> }> = [];
  return {
    google,
    metadata,
    secretManager,
    dir,
    policyFile,
    env,
    // Caller tokens are issued on our clock: the skew under test is between the broker and the token endpoint.
    callerToken: (email, overrides = {}) =>
      google.issueIdToken({
        email,
        audience: overrides.audience ?? AUDIENCE,
        iat: Math.floor(Date.now() / 1000),
      }),
    rotateKey(email) {
      const account = accounts.find((a) => a.email === email);
      if (!account) throw new Error(`unknown account ${email}`);
      storeKey(account);
    },
    async startBroker(target = 'broker', extra = {}, options = {}) {
      const b = await startBrokerProcess({ target, env: { ...env, ...extra }, ...options });
      brokers.push(b);
      return b;
    },
    async serveBroker(target = 'broker', extra = {}) {
      // Loaded on first use: npm start and the bench only spawn processes.
      const { serveInProcess } = await import('./in-process-broker.js');
      const b = await serveInProcess({ ...env, ...extra }, target);
      brokers.push(b);
      return b;
    },
    async close() {
      await Promise.all(brokers.map((b) => b.stop()));
      await secretManager.close();
      await google.close();
    },
  };
}
