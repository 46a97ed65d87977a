import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  IssuerKeys,
  type OidcIssuer,
  type SigningOptions,
  sha256KeyId,
  startIssuerHttp,
  withOverrides,
} from './issuer.js';

/** How to mint one service-account token. */
export interface KubernetesTokenOptions extends SigningOptions {
  namespace: string;
  serviceAccount: string;
  /** `aud`; default the issuer (the API server's default audience). */
  audiences?: string[];
  /** `exp - iat`, the projection's `expirationSeconds`; default 3600, at least 600 as the API server requires. */
  expirationSeconds?: number;
  /** The pod the token is bound to; default one named after the service account. `null` for an unbound token. */
  pod?: { name: string; uid?: string } | null;
  /** The node the pod runs on, when the token names it. */
  node?: { name: string; uid?: string };
  /** Seconds since the epoch; default now. */
  iat?: number;
  /** Claims set over the computed ones; a claim set to `undefined` is left out. */
  claims?: Record<string, unknown>;
}

/** A projected service-account token file, as the kubelet keeps it. */
export interface ProjectedToken {
  readonly path: string;
  /** The token the file holds now. */
  readonly token: string;
  /** Mints a fresh token (optionally with changes) and replaces the file atomically, as the kubelet's refresh does. */
  refresh(changes?: Partial<KubernetesTokenOptions>): Promise<string>;
}

/** The running Kubernetes-like OIDC issuer (a cluster's service-account issuer). */
export interface KubernetesIssuer extends OidcIssuer {
  claims(options: KubernetesTokenOptions): Record<string, unknown>;
  /** Mints a token directly (not counted as a request). */
  mint(options: KubernetesTokenOptions): Promise<string>;
  /** Writes a projected token to `path` (made if missing) and returns the handle that refreshes it. */
  projectToken(path: string, options: KubernetesTokenOptions): Promise<ProjectedToken>;
}

const MIN_EXPIRATION = 600;

/**
 * Starts an OIDC issuer that behaves like a Kubernetes API server's
 * service-account issuer on its own loopback port:
 * `/.well-known/openid-configuration` and `/openid/v1/jwks`, and tokens with
 * the claims the API server puts in projected service-account tokens
 * (`sub` `system:serviceaccount:NS:NAME`, an `aud` list, `kubernetes.io`
 * with namespace, service account and pod), signed RS256 with a `kid` that
 * is the SHA-256 of the public key. Shares the JWT machinery with the
 * GitHub-like issuer (`issuer.ts`).
 */
export async function startKubernetesIssuer(
  options: {
    host?: string;
    port?: number;
    /** `iss`; default the issuer's own URL. */
    issuer?: string;
    /** Milliseconds since the epoch. */
    now?: () => number;
    /** Called with every token (for leak scans). */
    onSecret?: (secret: string) => void;
  } = {},
): Promise<KubernetesIssuer> {
  const now = options.now ?? Date.now;
  const keys = await IssuerKeys.create(sha256KeyId);
  const uids = new Map<string, string>();
  const uidOf = (what: string) => {
    let uid = uids.get(what);
    if (!uid) {
      uid = randomUUID();
      uids.set(what, uid);
    }
    return uid;
  };
  let overrides: Record<string, unknown> = {};
  let issuer = '';
  let url = '';

  function claims(o: KubernetesTokenOptions): Record<string, unknown> {
    const expiration = o.expirationSeconds ?? 3600;
    if (expiration < MIN_EXPIRATION)
      throw new Error(`expirationSeconds: may not specify a duration less than ${MIN_EXPIRATION} seconds`);
    const iat = o.iat ?? Math.floor(now() / 1000);
    const pod = o.pod === null ? undefined : (o.pod ?? { name: `${o.serviceAccount}-7d9c8b6f5-x2k4q` });
    const computed: Record<string, unknown> = {
      aud: o.audiences ?? [issuer],
      exp: iat + expiration,
      iat,
      iss: issuer,
      jti: randomUUID(),
      'kubernetes.io': {
        namespace: o.namespace,
        ...(o.node ? { node: { name: o.node.name, uid: o.node.uid ?? uidOf(`node/${o.node.name}`) } } : {}),
        ...(pod ? { pod: { name: pod.name, uid: pod.uid ?? uidOf(`pod/${o.namespace}/${pod.name}`) } } : {}),
        serviceaccount: { name: o.serviceAccount, uid: uidOf(`sa/${o.namespace}/${o.serviceAccount}`) },
      },
      nbf: iat,
      sub: `system:serviceaccount:${o.namespace}:${o.serviceAccount}`,
    };
    return withOverrides(computed, o.claims ?? {});
  }

  async function mint(o: KubernetesTokenOptions): Promise<string> {
    const jwt = await keys.sign(claims(o), {}, o);
    options.onSecret?.(jwt);
    return jwt;
  }

  const http = await startIssuerHttp({
    ...(options.host === undefined ? {} : { host: options.host }),
    ...(options.port === undefined ? {} : { port: options.port }),
    async route(_req, u) {
      if (u.pathname === '/.well-known/openid-configuration') {
        const document = {
          issuer,
          jwks_uri: `${url}/openid/v1/jwks`,
          response_types_supported: ['id_token'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
        };
        return { status: 200, body: withOverrides(document, overrides) };
      }
      if (u.pathname === '/openid/v1/jwks')
        return { status: 200, body: keys.jwks(), contentType: 'application/jwk-set+json' };
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
    jwksUrl: `${url}/openid/v1/jwks`,
    keys,
    claims,
    mint,
    async projectToken(path, o) {
      let current = o;
      let token = '';
      const write = async () => {
        token = await mint(current);
        await mkdir(dirname(path), { recursive: true });
        const tmp = `${path}.${process.pid}.tmp`;
        await writeFile(tmp, token, { mode: 0o600 });
        await rename(tmp, path);
        return token;
      };
      await write();
      return {
        path,
        get token() {
          return token;
        },
        refresh(changes = {}) {
          current = { ...current, ...changes };
          return write();
        },
      };
    },
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
