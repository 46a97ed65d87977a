import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServer, numericIdFor, playTransportFault, type StandInContext } from './state.js';

/**
 * A fault a metadata server plays, for reliability tests. `only` limits it
 * to the token or the identity path; without it, any request takes it.
 * A metadata server that refuses connections is {@link MetadataServer.setDown}.
 */
export type MetadataFault = (
  | { kind: 'status'; status: number; body?: string }
  | { kind: 'delay'; ms: number }
  | { kind: 'hang' }
  | { kind: 'reset' }
) & { only?: 'token' | 'identity' };

/** How a metadata server is set up: the identity the "instance" runs as, and its project. */
export interface MetadataServerOptions {
  /** The service account the instance runs as (`service-accounts/default`). */
  email: string;
  /** `project/project-id`; default `local-project`. */
  projectId?: string;
  /** `project/numeric-project-id`; default derived from the project ID. */
  numericProjectId?: string;
  /** The instance's access scopes; default `cloud-platform`. */
  scopes?: readonly string[];
  /** A fixed delay before every answer, in milliseconds; default 0. */
  latencyMs?: number;
  /** `expires_in` of a fresh access token; default 3599. */
  tokenLifetimeSeconds?: number;
  /**
   * The `Content-Type` of the identity token: `text/html; charset=utf-8` (the
   * default) as on GCE and GKE, or `application/text` as Cloud Run's
   * metadata server answers, which gaxios reads as a Blob.
   */
  identityContentType?: string;
  host?: string;
  /** Default: a random free port. */
  port?: number;
}

/** What a metadata server counted. */
export interface MetadataServerStats {
  /** Every request that arrived, refused or not. */
  requests: number;
  /** Requests refused with 403 (no `Metadata-Flavor: Google`, or an `X-Forwarded-For`). */
  rejected: number;
  /** Requests for `.../token`, whatever the answer. */
  tokenRequests: number;
  /** Distinct access tokens minted (the server hands out the same token until it nears expiry, like GCE). */
  tokensIssued: number;
  /** Requests for `.../identity`, whatever the answer. */
  identityRequests: number;
}

/** A running metadata server (`GCE_METADATA_HOST=host`). */
export interface MetadataServer {
  /** `127.0.0.1:PORT`: the value for `GCE_METADATA_HOST`. */
  readonly host: string;
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The service account this instance runs as. */
  readonly email: string;
  readonly stats: MetadataServerStats;
  /** Queues `fault` for the next `times` matching requests (`Infinity` for all). */
  injectFault(fault: MetadataFault, times?: number): void;
  /** `true`: stop listening (connections are refused, open ones dropped); `false`: listen again on the same port. */
  setDown(down: boolean): Promise<void>;
  /** Makes every access token this server issued expire now (the IAM API then answers 401); the next request mints afresh. */
  expireTokens(): void;
  /** Sets the fixed delay before every answer (0 for none). */
  setLatency(ms: number): void;
  /** Clears faults (not the latency). */
  reset(): void;
  close(): Promise<void>;
}

const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
const BASE = '/computeMetadata/v1';
/** GCE hands out a cached token while it has at least this long to live. */
const REUSE_MARGIN_SECONDS = 300;

type Leaf = string | readonly string[] | ((req: IncomingMessage, query: URLSearchParams) => Promise<Answer>);
interface Dir {
  readonly [name: string]: Leaf | Dir;
}
interface Answer {
  status: number;
  body: string;
  type: string;
}

const text = (body: string, status = 200): Answer => ({ status, body, type: 'application/text' });
const html = (status: number, body: string): Answer => ({ status, body, type: 'text/html; charset=UTF-8' });
const isDir = (n: Leaf | Dir): n is Dir => typeof n === 'object' && !Array.isArray(n);

/**
 * Starts a Compute Engine metadata server on its own port, as strict as
 * Google's: `Metadata-Flavor: Google` is required on every request and
 * echoed on every answer, `X-Forwarded-For` is refused, directories answer
 * listings (or JSON with `?recursive=true`), and the default service
 * account's `token`, `email` and `identity` are served from the shared
 * stand-in state.
 */
export async function startMetadataServer(
  ctx: StandInContext,
  options: MetadataServerOptions,
): Promise<MetadataServer> {
  const email = options.email;
  const projectId = options.projectId ?? 'local-project';
  const numericProjectId = options.numericProjectId ?? numericIdFor(projectId).slice(0, 12);
  const instanceScopes = [...(options.scopes ?? [CLOUD_PLATFORM])];
  const lifetime = options.tokenLifetimeSeconds ?? 3599;
  const instanceId = numericIdFor(`${email}/instance`);
  const stats: MetadataServerStats = {
    requests: 0,
    rejected: 0,
    tokenRequests: 0,
    tokensIssued: 0,
    identityRequests: 0,
  };
  const faults: Array<{ fault: MetadataFault; remaining: number }> = [];
  const hanging = new Set<ServerResponse>();
  let latencyMs = options.latencyMs ?? 0;
  /** Tokens handed out, by the scope string they carry (GCE reuses one until it nears expiry). */
  const current = new Map<string, string>();
  const issued = new Set<string>();
  const numericId = () => ctx.accounts.get(email)?.clientId ?? numericIdFor(email);

  async function token(_req: IncomingMessage, query: URLSearchParams): Promise<Answer> {
    const requested = query.get('scopes');
    const scopes = requested ? requested.split(/[,\s]+/).filter(Boolean) : instanceScopes;
    const scope = scopes.join(' ');
    const t = Math.floor(ctx.now() / 1000);
    let accessToken = current.get(scope);
    let info = accessToken ? ctx.accessTokens.get(accessToken) : undefined;
    // A revoked token is not handed out again (the next request mints afresh).
    if (!accessToken || !info || info.revoked || info.exp - t < REUSE_MARGIN_SECONDS) {
      accessToken = `ya29.c.${randomBytes(48).toString('base64url')}`;
      info = { email, scope, clientId: numericId(), exp: t + lifetime, origin: 'metadata' };
      ctx.accessTokens.set(accessToken, info);
      ctx.onSecret(accessToken);
      current.set(scope, accessToken);
      issued.add(accessToken);
      stats.tokensIssued++;
    }
    return {
      status: 200,
      type: 'application/json',
      body: JSON.stringify({ access_token: accessToken, expires_in: info.exp - t, token_type: 'Bearer' }),
    };
  }

  async function identity(_req: IncomingMessage, query: URLSearchParams): Promise<Answer> {
    const audience = query.get('audience');
    if (!audience) return text('non-empty audience parameter required', 400);
    const format = query.get('format') ?? 'standard';
    if (format !== 'standard' && format !== 'full') return text(`invalid format parameter: ${format}`, 400);
    const iat = Math.floor(ctx.now() / 1000);
    const sub = numericId();
    const jwt = await ctx.signGoogle({
      iss: ctx.issuer,
      aud: audience,
      azp: sub,
      sub,
      iat,
      exp: iat + 3600,
      ...(format === 'full'
        ? {
            email,
            email_verified: true,
            google: {
              compute_engine: {
                instance_id: instanceId,
                instance_name: 'local-instance',
                project_id: projectId,
                project_number: Number(numericProjectId),
                zone: 'local-a',
              },
            },
          }
        : {}),
    });
    // GCE serves the identity token as text/html (other values as application/text):
    // gaxios reads text/* as a string but application/text as a Blob, so the
    // difference decides whether a URL-sourced external_account credential works.
    return { status: 200, body: jwt, type: options.identityContentType ?? 'text/html; charset=utf-8' };
  }

  const account: Dir = {
    aliases: ['default'],
    email,
    scopes: instanceScopes,
    token,
    identity,
  };
  const tree: Dir = {
    instance: {
      attributes: {},
      hostname: `local-instance.c.${projectId}.internal`,
      id: instanceId,
      name: 'local-instance',
      'service-accounts': { default: account, [email]: account },
      zone: `projects/${numericProjectId}/zones/local-a`,
    },
    project: { attributes: {}, 'numeric-project-id': numericProjectId, 'project-id': projectId },
    universe: { 'universe-domain': 'googleapis.com' },
  };

  function takeFault(kind: 'token' | 'identity' | 'other'): MetadataFault | undefined {
    const i = faults.findIndex((f) => f.fault.only === undefined || f.fault.only === kind);
    if (i < 0) return undefined;
    const entry = faults[i]!;
    if (--entry.remaining <= 0) faults.splice(i, 1);
    return entry.fault;
  }

  async function route(req: IncomingMessage, u: URL): Promise<Answer> {
    if (u.pathname === '/') return text('computeMetadata/\n');
    if (u.pathname === BASE) return { status: 301, body: `${BASE}/`, type: 'redirect' };
    if (!u.pathname.startsWith(`${BASE}/`)) return html(404, notFound(u.pathname));
    const rest = u.pathname.slice(BASE.length + 1);
    const trailing = rest === '' || rest.endsWith('/');
    const parts = rest.split('/').filter(Boolean).map(decodeURIComponent);
    let node: Leaf | Dir = tree;
    for (const part of parts) {
      if (!isDir(node) || !Object.hasOwn(node, part)) return html(404, notFound(u.pathname));
      node = node[part] as Leaf | Dir;
    }
    if (isDir(node)) {
      if (!trailing) return { status: 301, body: `${u.pathname}/${u.search}`, type: 'redirect' };
      if (u.searchParams.get('recursive') === 'true' || u.searchParams.get('alt') === 'json')
        return { status: 200, type: 'application/json', body: JSON.stringify(toJson(node)) };
      return text(
        `${Object.entries(node)
          .map(([k, v]) => (isDir(v) ? `${k}/` : k))
          .join('\n')}\n`,
      );
    }
    if (trailing) return html(404, notFound(u.pathname));
    if (typeof node === 'function') return node(req, u.searchParams);
    if (typeof node === 'string') {
      return u.searchParams.get('alt') === 'json'
        ? { status: 200, type: 'application/json', body: JSON.stringify(node) }
        : text(node);
    }
    return u.searchParams.get('alt') === 'json'
      ? { status: 200, type: 'application/json', body: JSON.stringify(node) }
      : text(`${node.join('\n')}\n`);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.requests++;
    const u = new URL(req.url ?? '/', 'http://metadata.google.internal');
    const headers = { 'Metadata-Flavor': 'Google', Server: 'Metadata Server for VM' };
    // Google's metadata server refuses requests without the flavor header, and any
    // request that carries X-Forwarded-For (it may have been proxied from outside).
    if (req.headers['metadata-flavor'] !== 'Google' || req.headers['x-forwarded-for'] !== undefined) {
      stats.rejected++;
      const why =
        req.headers['x-forwarded-for'] !== undefined
          ? 'Request had X-Forwarded-For header and cannot be served.'
          : 'Missing required header "Metadata-Flavor": "Google"';
      res.writeHead(403, { ...headers, 'Content-Type': 'text/html; charset=UTF-8' });
      res.end(forbidden(u.pathname, why));
      return;
    }
    const kind = u.pathname.endsWith('/token')
      ? 'token'
      : u.pathname.endsWith('/identity')
        ? 'identity'
        : 'other';
    if (kind === 'token') stats.tokenRequests++;
    if (kind === 'identity') stats.identityRequests++;
    if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));
    const fault = takeFault(kind);
    if (fault) {
      switch (fault.kind) {
        case 'status':
          res.writeHead(fault.status, { ...headers, 'Content-Type': 'text/html; charset=UTF-8' });
          res.end(fault.body ?? `<!DOCTYPE html><title>Error ${fault.status}</title>`);
          return;
        case 'delay':
        case 'hang':
        case 'reset':
          if (await playTransportFault(fault, req, res, hanging)) return;
          break;
      }
    }
    if (req.method !== 'GET') {
      res.writeHead(405, { ...headers, 'Content-Type': 'text/html; charset=UTF-8', Allow: 'GET' });
      res.end('Method not allowed');
      return;
    }
    const answer = await route(req, u);
    if (answer.type === 'redirect') {
      res.writeHead(301, { ...headers, Location: answer.body, 'Content-Type': 'text/html; charset=UTF-8' });
      res.end(`<a href="${answer.body}">Moved Permanently</a>.\n`);
      return;
    }
    res.writeHead(answer.status, { ...headers, 'Content-Type': answer.type });
    res.end(answer.body);
  }

  const host = options.host ?? '127.0.0.1';
  let server: Server = listen();
  function listen(): Server {
    return createServer((req, res) => {
      handle(req, res).catch(() => {
        if (!res.headersSent) {
          res.writeHead(500, { 'Metadata-Flavor': 'Google', 'Content-Type': 'text/html; charset=UTF-8' });
          res.end('Internal error');
        }
      });
    });
  }
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  let down = false;

  const stop = (s: Server) => closeServer(s, hanging);

  return {
    host: `${host}:${port}`,
    url: `http://${host}:${port}`,
    email,
    stats,
    injectFault(fault, times = 1) {
      faults.push({ fault, remaining: times });
    },
    async setDown(value) {
      if (value === down) return;
      down = value;
      if (value) {
        await stop(server);
      } else {
        server = listen();
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, host, resolve);
        });
      }
    },
    expireTokens() {
      const t = Math.floor(ctx.now() / 1000);
      for (const token of issued) {
        const info = ctx.accessTokens.get(token);
        if (info) info.exp = Math.min(info.exp, t);
      }
      current.clear();
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    reset() {
      faults.length = 0;
    },
    close: () => (down ? Promise.resolve() : stop(server)),
  };
}

/** A directory's recursive JSON, as GCE answers it: dashed names in camelCase, no token or identity. */
function toJson(dir: Dir): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(dir)) {
    if (typeof v === 'function') continue;
    const key = k.includes('@') ? k : k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    out[key] = isDir(v) ? toJson(v) : v;
  }
  return out;
}

function notFound(path: string): string {
  return `<!DOCTYPE html>\n<html lang=en>\n<title>Error 404 (Not Found)!!1</title>\n<p><b>404.</b> <ins>That's an error.</ins>\n<p>The requested URL <code>${escapeHtml(path)}</code> was not found on this server.  <ins>That's all we know.</ins>\n`;
}

function forbidden(path: string, why: string): string {
  return `<!DOCTYPE html>\n<html lang=en>\n<title>Error 403 (Forbidden)!!1</title>\n<p><b>403.</b> <ins>That's an error.</ins>\n<p>Your client does not have permission to get URL <code>${escapeHtml(path)}</code> from this server. ${why} <ins>That's all we know.</ins>\n`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}
