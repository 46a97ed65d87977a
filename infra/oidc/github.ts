import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  IssuerKeys,
  type OidcIssuer,
  type SigningOptions,
  startIssuerHttp,
  withOverrides,
} from './issuer.js';

/** The workflow run a GitHub Actions job belongs to: what its ID token's claims describe. */
export interface GitHubRun {
  owner: string;
  /** The repository's name (without the owner). */
  repo: string;
  ownerId: string;
  repositoryId: string;
  /** `refs/heads/BRANCH`, `refs/tags/TAG` or `refs/pull/N/merge`. */
  ref: string;
  sha: string;
  /** The workflow's name. */
  workflow: string;
  /** The workflow file, e.g. `.github/workflows/deploy.yml`. */
  workflowPath: string;
  actor: string;
  actorId: string;
  eventName: string;
  runId: string;
  runNumber: string;
  runAttempt: string;
  /** The job's environment, when it has one (it then names the subject). */
  environment?: string | undefined;
  visibility: 'public' | 'private' | 'internal';
  runnerEnvironment: 'github-hosted' | 'self-hosted';
}

/** How to mint one GitHub Actions ID token. */
export interface GitHubMintOptions extends SigningOptions {
  /** `aud`; default `https://github.com/OWNER`, as GitHub's. */
  audience?: string;
  /** Changes to the issuer's run for this token only. */
  run?: Partial<GitHubRun>;
  /** Claims set over the computed ones; a claim set to `undefined` is left out. */
  claims?: Record<string, unknown>;
  /** `exp - iat`; default 300, as in GitHub's example token. */
  lifetimeSeconds?: number;
  /** Seconds since the epoch; default now. */
  iat?: number;
}

/** The running GitHub-Actions-like OIDC issuer. */
export interface GitHubActionsIssuer extends OidcIssuer {
  /** The value for `ACTIONS_ID_TOKEN_REQUEST_URL` (it ends in `?api-version=2.0`; callers add `&audience=`). */
  readonly idTokenRequestUrl: string;
  /** The value for `ACTIONS_ID_TOKEN_REQUEST_TOKEN`. */
  readonly requestToken: string;
  /** The job's run (the token URL's tokens describe it). */
  readonly run: GitHubRun;
  /** Changes the job's run. */
  setRun(changes: Partial<GitHubRun>): void;
  /** The claims a token for `options` carries (no signing). */
  claims(options?: GitHubMintOptions): Record<string, unknown>;
  /** Mints a token directly (not counted as a request). */
  mint(options?: GitHubMintOptions): Promise<string>;
}

const DEFAULT_RUN: GitHubRun = {
  owner: 'octo-org',
  repo: 'octo-repo',
  ownerId: '65',
  repositoryId: '74',
  ref: 'refs/heads/main',
  sha: 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678',
  workflow: 'deploy',
  workflowPath: '.github/workflows/deploy.yml',
  actor: 'octocat',
  actorId: '12',
  eventName: 'push',
  runId: '5000000001',
  runNumber: '10',
  runAttempt: '1',
  visibility: 'private',
  runnerEnvironment: 'github-hosted',
};

/** `claims_supported` of GitHub's discovery document. */
const CLAIMS_SUPPORTED = [
  'sub',
  'aud',
  'exp',
  'iat',
  'iss',
  'jti',
  'nbf',
  'ref',
  'sha',
  'repository',
  'repository_id',
  'repository_owner',
  'repository_owner_id',
  'enterprise',
  'enterprise_id',
  'run_id',
  'run_number',
  'run_attempt',
  'actor',
  'actor_id',
  'workflow',
  'workflow_ref',
  'workflow_sha',
  'head_ref',
  'base_ref',
  'event_name',
  'ref_type',
  'ref_protected',
  'environment',
  'environment_node_id',
  'job_workflow_ref',
  'job_workflow_sha',
  'repository_visibility',
  'runner_environment',
  'issuer_scope',
];

/** `sub` as GitHub builds it by default: the environment, a pull request, or the ref. */
function subjectOf(run: GitHubRun): string {
  const repo = `repo:${run.owner}/${run.repo}`;
  if (run.environment) return `${repo}:environment:${run.environment}`;
  if (run.eventName === 'pull_request' || run.eventName === 'pull_request_target')
    return `${repo}:pull_request`;
  return `${repo}:ref:${run.ref}`;
}

/**
 * Starts an OIDC issuer that behaves like GitHub Actions'
 * (`token.actions.githubusercontent.com`) on its own loopback port:
 * `/.well-known/openid-configuration` and `/.well-known/jwks` as GitHub
 * serves them, and the job's ID token URL (`ACTIONS_ID_TOKEN_REQUEST_URL`):
 * `GET ...&audience=AUD` with `Authorization: bearer <request token>`
 * answers `{"count", "value": "<jwt>"}`. Tokens are RS256 with a `kid` and an
 * `x5t`, and carry GitHub's claims for the job's run.
 */
export async function startGitHubActionsIssuer(
  options: {
    host?: string;
    port?: number;
    /** `iss`; default the issuer's own URL. */
    issuer?: string;
    run?: Partial<GitHubRun>;
    /** Milliseconds since the epoch. */
    now?: () => number;
    /** Called with every token and the request token (for leak scans). */
    onSecret?: (secret: string) => void;
  } = {},
): Promise<GitHubActionsIssuer> {
  const now = options.now ?? Date.now;
  const keys = await IssuerKeys.create(
    () => randomUUID(),
    (publicKey) => ({
      x5t: createHash('sha1')
        .update(publicKey.export({ type: 'spki', format: 'der' }))
        .digest('base64url'),
    }),
  );
  const run: GitHubRun = { ...DEFAULT_RUN, ...options.run };
  const requestToken = randomBytes(32).toString('base64url');
  options.onSecret?.(requestToken);
  const planId = randomUUID();
  const jobId = randomUUID();
  const tokenPath = `/00000000-0000-0000-0000-000000000000/_apis/distributedtask/hubs/Actions/plans/${planId}/jobs/${jobId}/idtoken`;
  let overrides: Record<string, unknown> = {};
  let issuer = '';
  let url = '';

  function claims(o: GitHubMintOptions = {}): Record<string, unknown> {
    const r = { ...run, ...o.run };
    const iat = o.iat ?? Math.floor(now() / 1000);
    const repository = `${r.owner}/${r.repo}`;
    const workflowRef = `${repository}/${r.workflowPath}@${r.ref}`;
    const computed: Record<string, unknown> = {
      jti: randomUUID(),
      sub: subjectOf(r),
      aud: o.audience ?? `https://github.com/${r.owner}`,
      ref: r.ref,
      sha: r.sha,
      repository,
      repository_owner: r.owner,
      repository_owner_id: r.ownerId,
      run_id: r.runId,
      run_number: r.runNumber,
      run_attempt: r.runAttempt,
      repository_visibility: r.visibility,
      repository_id: r.repositoryId,
      actor_id: r.actorId,
      actor: r.actor,
      workflow: r.workflow,
      head_ref: '',
      base_ref: '',
      event_name: r.eventName,
      ref_protected: 'false',
      ref_type: r.ref.startsWith('refs/tags/') ? 'tag' : 'branch',
      workflow_ref: workflowRef,
      workflow_sha: r.sha,
      job_workflow_ref: workflowRef,
      job_workflow_sha: r.sha,
      runner_environment: r.runnerEnvironment,
      ...(r.environment ? { environment: r.environment } : {}),
      iss: issuer,
      // As in GitHub's example token: nbf 10 minutes before iat, exp 5 minutes after.
      nbf: iat - 600,
      exp: iat + (o.lifetimeSeconds ?? 300),
      iat,
    };
    return withOverrides(computed, o.claims ?? {});
  }

  async function mint(o: GitHubMintOptions = {}): Promise<string> {
    const key = o.key === undefined || o.key === 'current' ? keys.current : undefined;
    const header = { typ: 'JWT', ...(key ? { x5t: key.jwk['x5t'] } : {}) };
    const jwt = await keys.sign(claims(o), header, o);
    options.onSecret?.(jwt);
    return jwt;
  }

  const http = await startIssuerHttp({
    ...(options.host === undefined ? {} : { host: options.host }),
    ...(options.port === undefined ? {} : { port: options.port }),
    async route(req, u, stats) {
      if (u.pathname === '/.well-known/openid-configuration') {
        const document = {
          issuer,
          jwks_uri: `${url}/.well-known/jwks`,
          subject_types_supported: ['public', 'pairwise'],
          response_types_supported: ['id_token'],
          claims_supported: CLAIMS_SUPPORTED,
          id_token_signing_alg_values_supported: ['RS256'],
          scopes_supported: ['openid'],
        };
        return { status: 200, body: withOverrides(document, overrides) };
      }
      if (u.pathname === '/.well-known/jwks') return { status: 200, body: keys.jwks() };
      if (u.pathname === tokenPath) {
        const bearer = /^bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
        if (bearer !== requestToken) {
          stats.refused++;
          return { status: 401, body: { message: 'The user is not authorized to request an ID token.' } };
        }
        if (u.searchParams.get('api-version') === null) {
          stats.refused++;
          return { status: 400, body: { message: 'The api-version query parameter is required.' } };
        }
        const audience = u.searchParams.get('audience');
        const value = await mint(audience ? { audience } : {});
        stats.tokensIssued++;
        return { status: 200, body: { count: value.length, value } };
      }
      return undefined;
    },
  });
  url = http.url;
  issuer = options.issuer ?? url;
  return {
    ...http,
    url,
    issuer,
    discoveryUrl: `${url}/.well-known/openid-configuration`,
    jwksUrl: `${url}/.well-known/jwks`,
    idTokenRequestUrl: `${url}${tokenPath}?api-version=2.0`,
    requestToken,
    keys,
    run,
    setRun(changes) {
      Object.assign(run, changes);
    },
    claims,
    mint,
    rotateKeys: (o) => keys.rotate(o),
    setDiscovery(o) {
      overrides = { ...o };
    },
    reset() {
      http.reset();
      overrides = {};
    },
  };
}
