import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { boundaryAllows, STORAGE_ROLES, type StoragePermission } from './boundary.js';
import type { CelResource } from './cel.js';
import { OBJECT_LIST_PREFIX } from './cel.js';
import {
  type AccessTokenInfo,
  bearerOf,
  closeServer,
  FaultQueue,
  liveAccessToken,
  playTransportFault,
  type StandInContext,
  sendJson,
} from './state.js';

/** The Cloud Storage JSON API calls the stand-in serves. */
export type StorageOperation = 'get' | 'download' | 'list' | 'upload' | 'delete';

/**
 * A fault the Storage stand-in plays, optionally on one operation only.
 * `status` answers in the JSON API's error shape
 * (`{"error":{"code","message","errors":[{"message","domain","reason"}]}}`)
 * unless `body` is given verbatim.
 */
export type StorageFault = (
  | {
      kind: 'status';
      status: number;
      message?: string;
      reason?: string;
      body?: string;
      retryAfterSeconds?: number;
    }
  | { kind: 'delay'; ms: number }
  | { kind: 'hang' }
  | { kind: 'reset' }
) & { only?: StorageOperation };

/** One request as the Storage stand-in saw it. */
export interface StorageRequest {
  method: string;
  operation: StorageOperation | 'unknown';
  bucket?: string;
  object?: string;
  /** `prefix` of a list call. */
  prefix?: string;
  /** The bearer token that arrived, whether or not it was accepted. */
  token?: string;
  /** The principal the token stands for, when it was live. */
  email?: string;
  /** Whether the token was a downscoped one (issued by STS). */
  downscoped: boolean;
  status: number;
}

/** A stored object's public facts. */
export interface StoredObject {
  bucket: string;
  name: string;
  data: Buffer;
  contentType: string;
  generation: string;
  metadata?: Record<string, string>;
}

/** The running Cloud Storage JSON API stand-in. */
export interface StorageServer {
  /** The value for `apiEndpoint` (standing for `https://storage.googleapis.com`). */
  readonly url: string;
  /** Every request, in order. */
  readonly requests: readonly StorageRequest[];
  /** Requests that carried this bearer token. */
  requestsWithToken(token: string): StorageRequest[];
  /** Stores an object (the bucket is made on first use). */
  putObject(bucket: string, name: string, data: string | Uint8Array, contentType?: string): StoredObject;
  getObject(bucket: string, name: string): StoredObject | undefined;
  /** Grants `member` (an email, optionally `serviceAccount:` or `user:`) a Storage role on the bucket. */
  grantBucket(bucket: string, member: string, role: string): void;
  revokeBucket(bucket: string, member: string, role: string): void;
  injectFault(fault: StorageFault, times?: number): void;
  /** Clears faults (not objects, grants or the request log). */
  reset(): void;
  close(): Promise<void>;
}

const READ_SCOPES = new Set([
  'https://www.googleapis.com/auth/devstorage.read_only',
  'https://www.googleapis.com/auth/devstorage.read_write',
  'https://www.googleapis.com/auth/devstorage.full_control',
  'https://www.googleapis.com/auth/cloud-platform',
  'https://www.googleapis.com/auth/cloud-platform.read-only',
]);
const WRITE_SCOPES = new Set([
  'https://www.googleapis.com/auth/devstorage.read_write',
  'https://www.googleapis.com/auth/devstorage.full_control',
  'https://www.googleapis.com/auth/cloud-platform',
]);
const PERMISSION: Record<StorageOperation, StoragePermission> = {
  get: 'storage.objects.get',
  download: 'storage.objects.get',
  list: 'storage.objects.list',
  upload: 'storage.objects.create',
  delete: 'storage.objects.delete',
};
const REASON: Record<number, string> = {
  400: 'invalid',
  401: 'authError',
  403: 'forbidden',
  404: 'notFound',
  409: 'conflict',
  412: 'conditionNotMet',
  429: 'rateLimitExceeded',
  500: 'backendError',
  503: 'backendError',
};

/** An error in the JSON API's shape. */
class StorageApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly reason = REASON[code] ?? 'unknown',
    readonly extra: Record<string, string> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
  body(): unknown {
    return {
      error: {
        code: this.code,
        message: this.message,
        errors: [{ message: this.message, domain: 'global', reason: this.reason, ...this.extra }],
      },
    };
  }
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32C (Castagnoli) of the bytes, base64 of its big-endian form, as Cloud Storage reports it. */
function crc32c(data: Buffer): string {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return out.toString('base64');
}

const md5 = (data: Buffer) => createHash('md5').update(data).digest('base64');

function readBytes(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The parts of a `multipart/related` body: each part's headers (lower-case names) and bytes. */
function multipartParts(
  body: Buffer,
  boundary: string,
): Array<{ headers: Record<string, string>; data: Buffer }> {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: Array<{ headers: Record<string, string>; data: Buffer }> = [];
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const next = body.indexOf(delimiter, start);
    if (next < 0) break;
    let part = body.subarray(start, next);
    if (part.subarray(0, 2).toString() === '\r\n') part = part.subarray(2);
    if (part.subarray(-2).toString() === '\r\n') part = part.subarray(0, -2);
    const split = part.indexOf('\r\n\r\n');
    const head = split < 0 ? '' : part.subarray(0, split).toString('utf8');
    const headers: Record<string, string> = {};
    for (const line of head.split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    parts.push({ headers, data: split < 0 ? part : part.subarray(split + 4) });
    at = next;
  }
  return parts;
}

/**
 * Starts the Cloud Storage JSON API stand-in on its own port: object
 * metadata and media (`/storage/v1/...` and `/download/storage/v1/...`),
 * listing, media and multipart uploads, and delete, over objects held in
 * memory. It authorizes as Cloud Storage does: a live bearer the stand-in
 * issued (401 otherwise), a storage scope (403), the principal's bucket IAM
 * role, and for a downscoped token its Credential Access Boundary too (403).
 */
export async function startStorageServer(
  ctx: StandInContext,
  options: { host?: string; port?: number } = {},
): Promise<StorageServer> {
  const buckets = new Map<string, Map<string, StoredObject>>();
  const grants = new Map<string, Map<string, Set<string>>>();
  const requests: StorageRequest[] = [];
  const faults = new FaultQueue<StorageFault>();
  const hanging = new Set<ServerResponse>();
  let lastGeneration = 0;
  let url = '';

  const bucketOf = (name: string) => {
    let b = buckets.get(name);
    if (!b) {
      b = new Map();
      buckets.set(name, b);
    }
    return b;
  };
  const memberOf = (member: string) => member.replace(/^(serviceAccount|user):/, '').toLowerCase();

  function store(
    bucket: string,
    name: string,
    data: Buffer,
    contentType: string,
    metadata?: Record<string, string>,
  ): StoredObject {
    // Generations are microseconds since the epoch, increasing.
    lastGeneration = Math.max(lastGeneration + 1, ctx.now() * 1000);
    const object: StoredObject = {
      bucket,
      name,
      data,
      contentType,
      generation: String(lastGeneration),
      ...(metadata ? { metadata } : {}),
    };
    bucketOf(bucket).set(name, object);
    return object;
  }

  function resource(o: StoredObject): Record<string, unknown> {
    const encoded = encodeURIComponent(o.name);
    const time = new Date(Number(BigInt(o.generation) / 1000n)).toISOString();
    return {
      kind: 'storage#object',
      id: `${o.bucket}/${o.name}/${o.generation}`,
      selfLink: `${url}/storage/v1/b/${o.bucket}/o/${encoded}`,
      mediaLink: `${url}/download/storage/v1/b/${o.bucket}/o/${encoded}?generation=${o.generation}&alt=media`,
      name: o.name,
      bucket: o.bucket,
      generation: o.generation,
      metageneration: '1',
      contentType: o.contentType,
      storageClass: 'STANDARD',
      size: String(o.data.length),
      md5Hash: md5(o.data),
      crc32c: crc32c(o.data),
      etag: Buffer.from(o.generation).toString('base64'),
      timeCreated: time,
      updated: time,
      timeStorageClassUpdated: time,
      ...(o.metadata ? { metadata: o.metadata } : {}),
    };
  }

  /** Checks the bearer, its scope, the principal's IAM role and a downscoped token's boundary. */
  function authorize(
    req: IncomingMessage,
    entry: StorageRequest,
    operation: StorageOperation,
    bucket: string,
    object: string | undefined,
    prefix: string,
  ): AccessTokenInfo {
    const permission = PERMISSION[operation];
    const what = operation === 'list' ? 'the Google Cloud Storage bucket' : 'the Google Cloud Storage object';
    const token = bearerOf(req);
    if (token === undefined) {
      throw new StorageApiError(
        401,
        `Anonymous caller does not have ${permission} access to ${what}. Permission '${permission}' denied on resource (or it may not exist).`,
        'required',
        { locationType: 'header', location: 'Authorization' },
      );
    }
    entry.token = token;
    const info = liveAccessToken(ctx, token);
    if (!info) {
      throw new StorageApiError(
        401,
        'Invalid Credentials',
        'authError',
        { locationType: 'header', location: 'Authorization' },
        { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' },
      );
    }
    const principal = info.sub ?? info.email;
    entry.email = principal;
    entry.downscoped = info.origin === 'sts';
    const scopes = info.scope.split(' ');
    const wanted = operation === 'upload' || operation === 'delete' ? WRITE_SCOPES : READ_SCOPES;
    if (!scopes.some((s) => wanted.has(s))) {
      throw new StorageApiError(
        403,
        'Provided scope(s) are not authorized',
        'forbidden',
        {},
        {
          'WWW-Authenticate': `Bearer realm="https://accounts.google.com/", error=insufficient_scope, scope="https://www.googleapis.com/auth/devstorage.${wanted === WRITE_SCOPES ? 'read_write' : 'read_only'}"`,
        },
      );
    }
    const roles = grants.get(bucket)?.get(principal.toLowerCase()) ?? new Set<string>();
    const granted = [...roles].some((r) => STORAGE_ROLES[r]?.includes(permission));
    const cel: CelResource =
      operation === 'list'
        ? {
            name: `projects/_/buckets/${bucket}`,
            type: 'storage.googleapis.com/Bucket',
            apiAttributes: { [OBJECT_LIST_PREFIX]: prefix },
          }
        : { name: `projects/_/buckets/${bucket}/objects/${object}`, type: 'storage.googleapis.com/Object' };
    const bounded = !info.boundary || boundaryAllows(info.boundary, bucket, permission, cel);
    if (!granted || !bounded) {
      throw new StorageApiError(
        403,
        `${principal} does not have ${permission} access to ${what}. Permission '${permission}' denied on resource (or it may not exist).`,
      );
    }
    return info;
  }

  function objectOr404(bucket: string, name: string): StoredObject {
    const b = buckets.get(bucket);
    if (!b) throw new StorageApiError(404, 'The specified bucket does not exist.');
    const o = b.get(name);
    if (!o) throw new StorageApiError(404, `No such object: ${bucket}/${name}`);
    return o;
  }

  function sendMedia(res: ServerResponse, o: StoredObject): void {
    res.writeHead(200, {
      'Content-Type': o.contentType,
      'Content-Length': String(o.data.length),
      'Cache-Control': 'no-store',
      ETag: Buffer.from(o.generation).toString('base64'),
      'x-goog-generation': o.generation,
      'x-goog-metageneration': '1',
      'x-goog-hash': `crc32c=${crc32c(o.data)},md5=${md5(o.data)}`,
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-stored-content-length': String(o.data.length),
      'x-goog-storage-class': 'STANDARD',
    });
    res.end(o.data);
  }

  function list(res: ServerResponse, bucket: string, query: URLSearchParams): void {
    const b = buckets.get(bucket);
    if (!b) throw new StorageApiError(404, 'The specified bucket does not exist.');
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') ?? '';
    const max = Math.min(Number(query.get('maxResults') ?? 1000) || 1000, 1000);
    const after = query.get('pageToken') ? Buffer.from(query.get('pageToken')!, 'base64url').toString() : '';
    const items: StoredObject[] = [];
    const prefixes = new Set<string>();
    let next: string | undefined;
    for (const name of [...b.keys()].sort()) {
      if (!name.startsWith(prefix) || (after && name <= after)) continue;
      if (items.length + prefixes.size >= max) {
        next = Buffer.from(items.at(-1)?.name ?? name).toString('base64url');
        break;
      }
      const rest = name.slice(prefix.length);
      const cut = delimiter ? rest.indexOf(delimiter) : -1;
      if (cut >= 0) prefixes.add(prefix + rest.slice(0, cut + delimiter.length));
      else items.push(b.get(name)!);
    }
    sendJson(res, 200, {
      kind: 'storage#objects',
      ...(next ? { nextPageToken: next } : {}),
      ...(prefixes.size > 0 ? { prefixes: [...prefixes] } : {}),
      ...(items.length > 0 ? { items: items.map(resource) } : {}),
    });
  }

  /** What an upload request carries: the object's name, bytes and metadata, or why it is malformed. */
  function parseUpload(
    req: IncomingMessage,
    query: URLSearchParams,
    body: Buffer,
  ): {
    name?: string;
    data: Buffer;
    contentType: string;
    metadata?: Record<string, string>;
    error?: StorageApiError;
  } {
    const uploadType = query.get('uploadType');
    const fromQuery = query.get('name') ?? undefined;
    const header = (req.headers['content-type'] ?? 'application/octet-stream').toString();
    const malformed = (message: string, reason?: string) => ({
      ...(fromQuery === undefined ? {} : { name: fromQuery }),
      data: body,
      contentType: header,
      error: new StorageApiError(400, message, reason),
    });
    if (uploadType === 'media') {
      if (!fromQuery) return malformed('Required parameter: name', 'required');
      return { name: fromQuery, data: body, contentType: header };
    }
    if (uploadType !== 'multipart')
      return malformed(
        `uploadType ${uploadType ?? '(none)'} is not served by the stand-in (media and multipart are).`,
      );
    const boundary = /boundary="?([^";]+)"?/i.exec(header)?.[1];
    const parts = boundary ? multipartParts(body, boundary) : [];
    if (parts.length !== 2)
      return malformed('Multipart upload must have exactly a metadata part and a media part.');
    let meta: Record<string, unknown>;
    try {
      meta = JSON.parse(parts[0]!.data.toString('utf8')) as Record<string, unknown>;
    } catch {
      return malformed('Invalid JSON payload in the metadata part.');
    }
    const name = typeof meta['name'] === 'string' ? meta['name'] : fromQuery;
    if (!name) return malformed('Required parameter: name', 'required');
    return {
      name,
      data: parts[1]!.data,
      contentType:
        (typeof meta['contentType'] === 'string' ? meta['contentType'] : undefined) ??
        parts[1]!.headers['content-type'] ??
        'application/octet-stream',
      ...(meta['metadata'] && typeof meta['metadata'] === 'object'
        ? { metadata: meta['metadata'] as Record<string, string> }
        : {}),
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBytes(req);
    const u = new URL(req.url ?? '/', 'http://storage');
    const method = req.method ?? 'GET';
    const objectPath = /^\/(download\/)?storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(u.pathname);
    const listPath = /^\/storage\/v1\/b\/([^/]+)\/o\/?$/.exec(u.pathname);
    const uploadPath = /^\/upload\/storage\/v1\/b\/([^/]+)\/o\/?$/.exec(u.pathname);
    let operation: StorageOperation | 'unknown' = 'unknown';
    let bucket: string | undefined;
    let object: string | undefined;
    if (objectPath && method === 'GET') {
      operation = u.searchParams.get('alt') === 'media' ? 'download' : 'get';
      bucket = decodeURIComponent(objectPath[2]!);
      object = decodeURIComponent(objectPath[3]!);
    } else if (objectPath && method === 'DELETE' && !objectPath[1]) {
      operation = 'delete';
      bucket = decodeURIComponent(objectPath[2]!);
      object = decodeURIComponent(objectPath[3]!);
    } else if (listPath && method === 'GET') {
      operation = 'list';
      bucket = decodeURIComponent(listPath[1]!);
    } else if (uploadPath && method === 'POST') {
      operation = 'upload';
      bucket = decodeURIComponent(uploadPath[1]!);
    }
    const prefix = u.searchParams.get('prefix') ?? '';
    const entry: StorageRequest = {
      method,
      operation,
      ...(bucket === undefined ? {} : { bucket }),
      ...(object === undefined ? {} : { object }),
      ...(operation === 'list' ? { prefix } : {}),
      downscoped: false,
      status: 0,
    };
    const token = bearerOf(req);
    if (token !== undefined) entry.token = token;
    requests.push(entry);
    const fault = faults.take(operation);
    if (fault) {
      if (fault.kind === 'status') {
        entry.status = fault.status;
        const headers =
          fault.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(fault.retryAfterSeconds) };
        if (fault.body !== undefined) {
          res.writeHead(fault.status, { 'Content-Type': 'text/html; charset=UTF-8', ...headers });
          res.end(fault.body);
        } else {
          const err = new StorageApiError(
            fault.status,
            fault.message ?? `Injected ${fault.status}.`,
            fault.reason,
          );
          sendJson(res, fault.status, err.body(), headers);
        }
        return;
      }
      if (await playTransportFault(fault, req, res, hanging)) return;
    }
    try {
      if (operation === 'unknown' || bucket === undefined) throw new StorageApiError(404, 'Not Found');
      const uploaded = operation === 'upload' ? parseUpload(req, u.searchParams, body) : undefined;
      if (uploaded?.name !== undefined) entry.object = uploaded.name;
      authorize(req, entry, operation, bucket, object ?? uploaded?.name ?? '', prefix);
      switch (operation) {
        case 'get':
          sendJson(res, 200, resource(objectOr404(bucket, object!)));
          break;
        case 'download':
          sendMedia(res, objectOr404(bucket, object!));
          break;
        case 'list':
          list(res, bucket, u.searchParams);
          break;
        case 'upload': {
          const { name, data, contentType, metadata, error } = uploaded!;
          if (error || name === undefined) throw error;
          sendJson(res, 200, resource(store(bucket, name, data, contentType, metadata)));
          break;
        }
        case 'delete':
          objectOr404(bucket, object!);
          buckets.get(bucket)!.delete(object!);
          res.writeHead(204);
          res.end();
          break;
      }
      entry.status = res.statusCode;
    } catch (err) {
      if (!(err instanceof StorageApiError)) throw err;
      entry.status = err.code;
      sendJson(res, err.code, err.body(), err.headers);
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 500, new StorageApiError(500, 'Backend Error').body());
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, host, resolve));
  url = `http://${host}:${(server.address() as AddressInfo).port}`;

  return {
    url,
    requests,
    requestsWithToken: (token) => requests.filter((r) => r.token === token),
    putObject: (bucket, name, data, contentType = 'application/octet-stream') =>
      store(bucket, name, Buffer.from(data), contentType),
    getObject: (bucket, name) => buckets.get(bucket)?.get(name),
    grantBucket(bucket, member, role) {
      if (!STORAGE_ROLES[role]) throw new Error(`not a Storage role the stand-in knows: ${role}`);
      bucketOf(bucket);
      let members = grants.get(bucket);
      if (!members) {
        members = new Map();
        grants.set(bucket, members);
      }
      const m = memberOf(member);
      members.set(m, (members.get(m) ?? new Set()).add(role));
    },
    revokeBucket(bucket, member, role) {
      grants.get(bucket)?.get(memberOf(member))?.delete(role);
    },
    injectFault(fault, times = 1) {
      faults.push(fault, times);
    },
    reset() {
      faults.clear();
    },
    close: () => closeServer(server, hanging),
  };
}
