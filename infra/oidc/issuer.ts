import { createHash, createHmac, generateKeyPair, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { exportJWK, type JWK, SignJWT } from 'jose';
import { closeServer, playTransportFault } from '../google/state.js';

const generate = promisify(generateKeyPair);

/** An RSA signing key of an issuer, with its public JWK as the JWKS lists it. */
export interface IssuerKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly jwk: JWK;
}

/**
 * How a token is signed, for tests of verifiers: `RS256` with a published
 * key (the default); `none` (no signature: `header.payload.`); `HS256` keyed
 * with the issuer's public key in PEM (the classic algorithm-confusion
 * forgery); or RS256 with a key the JWKS does not list (`unpublished`), or
 * with another issuer's key (its `kid` included).
 */
export interface SigningOptions {
  alg?: 'RS256' | 'none' | 'HS256';
  key?: 'current' | 'unpublished' | { readonly keys: IssuerKeys };
}

/** An issuer's keys: the current one signs, the published ones make the JWKS; rotation adds a key. */
export class IssuerKeys {
  readonly #published: IssuerKey[] = [];
  #unpublished: Promise<IssuerKey> | undefined;

  private constructor(
    readonly kidOf: (publicKey: KeyObject) => string,
    readonly jwkExtras: (publicKey: KeyObject) => Record<string, unknown>,
  ) {}

  /** A key set with one key; `kidOf` names keys as the issuer names them, `jwkExtras` adds JWK members. */
  static async create(
    kidOf: (publicKey: KeyObject) => string,
    jwkExtras: (publicKey: KeyObject) => Record<string, unknown> = () => ({}),
  ): Promise<IssuerKeys> {
    const keys = new IssuerKeys(kidOf, jwkExtras);
    keys.#published.push(await keys.#make());
    return keys;
  }

  async #make(): Promise<IssuerKey> {
    const { privateKey, publicKey } = await generate('rsa', { modulusLength: 2048 });
    const kid = this.kidOf(publicKey);
    const jwk = {
      ...(await exportJWK(publicKey)),
      kid,
      alg: 'RS256',
      use: 'sig',
      ...this.jwkExtras(publicKey),
    };
    return { kid, privateKey, publicKey, jwk };
  }

  get current(): IssuerKey {
    return this.#published.at(-1)!;
  }

  /** A key this issuer never publishes, made on first use. */
  unpublished(): Promise<IssuerKey> {
    this.#unpublished ??= this.#make();
    return this.#unpublished;
  }

  /** The JWKS document. */
  jwks(): { keys: JWK[] } {
    return { keys: this.#published.map((k) => k.jwk) };
  }

  /**
   * Makes a new current key. The old ones stay published (as issuers keep
   * them while tokens they signed live) unless `retireOld`.
   */
  async rotate(options: { retireOld?: boolean } = {}): Promise<string> {
    const key = await this.#make();
    if (options.retireOld) this.#published.length = 0;
    this.#published.push(key);
    return key.kid;
  }

  /** Signs `claims` with `header` members (beside `alg` and `kid`) as `options` says. */
  async sign(
    claims: Record<string, unknown>,
    header: Record<string, unknown>,
    options: SigningOptions = {},
  ): Promise<string> {
    const alg = options.alg ?? 'RS256';
    const encode = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    if (alg === 'none') return `${encode({ alg: 'none', ...header })}.${encode(claims)}.`;
    if (alg === 'HS256') {
      const input = `${encode({ alg: 'HS256', kid: this.current.kid, ...header })}.${encode(claims)}`;
      const secret = this.current.publicKey.export({ type: 'spki', format: 'pem' });
      return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
    }
    const key =
      options.key === 'unpublished'
        ? await this.unpublished()
        : options.key === undefined || options.key === 'current'
          ? this.current
          : options.key.keys.current;
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: key.kid, ...header })
      .sign(key.privateKey);
  }
}

/** `kid` as Kubernetes derives it: base64url of the SHA-256 of the DER public key. */
export const sha256KeyId = (publicKey: KeyObject) =>
  createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64url');

/** A fault an issuer plays, optionally on one path only (e.g. `/.well-known/jwks`). */
export type IssuerFault = (
  | { kind: 'status'; status: number; body?: string }
  | { kind: 'delay'; ms: number }
  | { kind: 'hang' }
  | { kind: 'reset' }
) & { only?: string };

/** What an issuer counted. */
export interface IssuerStats {
  /** Every request that arrived, whatever the answer. */
  requests: number;
  /** Requests per path (without the query). */
  byPath: Record<string, number>;
  /** Tokens issued through the issuer's own token route (not by `mint`). */
  tokensIssued: number;
  /** Token requests refused (no or a wrong credential). */
  refused: number;
}

/** An answer of a route. */
export interface RouteAnswer {
  status: number;
  body: unknown;
  contentType?: string;
}

/** The HTTP side of an issuer: counters, faults, and going down (connection refused) and back on the same port. */
export interface IssuerHttp {
  readonly url: string;
  readonly stats: IssuerStats;
  injectFault(fault: IssuerFault, times?: number): void;
  setDown(down: boolean): Promise<void>;
  /** Clears faults. */
  reset(): void;
  close(): Promise<void>;
}

/**
 * Serves an issuer's routes on its own loopback port. `route` answers a
 * request (undefined for 404); bodies that are not strings are sent as JSON.
 */
export async function startIssuerHttp(options: {
  host?: string;
  port?: number;
  route: (req: IncomingMessage, url: URL, stats: IssuerStats) => Promise<RouteAnswer | undefined>;
}): Promise<IssuerHttp> {
  const stats: IssuerStats = { requests: 0, byPath: {}, tokensIssued: 0, refused: 0 };
  const faults: Array<{ fault: IssuerFault; remaining: number }> = [];
  const hanging = new Set<ServerResponse>();
  const host = options.host ?? '127.0.0.1';

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://issuer');
    stats.requests++;
    stats.byPath[url.pathname] = (stats.byPath[url.pathname] ?? 0) + 1;
    const i = faults.findIndex((f) => f.fault.only === undefined || f.fault.only === url.pathname);
    if (i >= 0) {
      const entry = faults[i]!;
      if (--entry.remaining <= 0) faults.splice(i, 1);
      const fault = entry.fault;
      if (fault.kind === 'status') {
        res.writeHead(fault.status, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end(fault.body ?? `injected ${fault.status}`);
        return;
      }
      if (await playTransportFault(fault, req, res, hanging)) return;
    }
    const answer =
      req.method === 'GET'
        ? await options.route(req, url, stats)
        : { status: 405, body: 'Method Not Allowed' };
    const a = answer ?? { status: 404, body: '404 page not found' };
    const text = typeof a.body === 'string' ? a.body : JSON.stringify(a.body);
    res.writeHead(a.status, {
      'Content-Type':
        a.contentType ??
        (typeof a.body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8'),
      'Cache-Control': 'no-store',
    });
    res.end(text);
  }

  const listen = (port: number) =>
    new Promise<Server>((resolve, reject) => {
      const s = createServer((req, res) => {
        handle(req, res).catch(() => {
          if (!res.headersSent) {
            res.writeHead(500);
            res.end();
          }
        });
      });
      s.once('error', reject);
      s.listen(port, host, () => resolve(s));
    });
  const stop = (s: Server) => closeServer(s, hanging);

  let server: Server | undefined = await listen(options.port ?? 0);
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    stats,
    injectFault(fault, times = 1) {
      faults.push({ fault, remaining: times });
    },
    async setDown(down) {
      if (down && server) {
        const s = server;
        server = undefined;
        await stop(s);
      } else if (!down && !server) {
        server = await listen(port);
      }
    },
    reset() {
      faults.length = 0;
    },
    close: async () => {
      if (server) await stop(server);
      server = undefined;
    },
  };
}

/** What both issuers share: their URLs, keys, discovery document, counters and hooks. */
export interface OidcIssuer extends Omit<IssuerHttp, 'url'> {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The `iss` of its tokens and its discovery document's `issuer` (default: `url`). */
  readonly issuer: string;
  /** `{url}/.well-known/openid-configuration`. */
  readonly discoveryUrl: string;
  /** The JWKS URL its discovery document names. */
  readonly jwksUrl: string;
  /** Its signing keys (to sign with this issuer's key as another issuer: `mint({ key: thisIssuer })`). */
  readonly keys: IssuerKeys;
  /** Makes a new signing key (the old stay published unless `retireOld`); resolves with its `kid`. */
  rotateKeys(options?: { retireOld?: boolean }): Promise<string>;
  /**
   * Members merged over the discovery document (e.g. `{ jwks_uri: 'http://elsewhere/jwks' }`, or
   * `{ issuer: 'https://other' }`); a member set to `undefined` is left out; `{}` restores it.
   */
  setDiscovery(overrides: Record<string, unknown>): void;
}

/** The discovery document with a test's overrides applied (`undefined` members dropped). */
export function withOverrides(
  document: Record<string, unknown>,
  overrides: Record<string, unknown>,
): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...document, ...overrides };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  return merged;
}
