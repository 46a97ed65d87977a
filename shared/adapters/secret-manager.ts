import { crc32c } from '../crc32c.js';
import { BrokerError } from '../errors.js';
import type { SecretSource } from './secret-source.js';

type SecretManagerModule = typeof import('@google-cloud/secret-manager');
type Client = InstanceType<SecretManagerModule['SecretManagerServiceClient']>;

export interface SecretManagerSourceOptions {
  /** `host:port` of a plaintext gRPC Secret Manager (`SECRET_MANAGER_EMULATOR_HOST`). */
  emulatorHost?: string;
  /** Budget of one read, retries included. */
  timeoutMs?: number;
  loadModule?: () => Promise<SecretManagerModule>;
}

// gRPC status codes (google.rpc.Code).
const UNAVAILABLE_CODES = new Set([1, 2, 4, 8, 10, 13, 14]); // CANCELLED UNKNOWN DEADLINE_EXCEEDED RESOURCE_EXHAUSTED ABORTED INTERNAL UNAVAILABLE
const NAMES: Record<number, string> = {
  1: 'CANCELLED',
  2: 'UNKNOWN',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  16: 'UNAUTHENTICATED',
};

/**
 * Reads key secrets with the official client, imported lazily on the first
 * read (it costs about 275 ms to import: never on the cache-hit path), and
 * checks each payload's CRC32C. Maps gRPC failures to BrokerErrors:
 * unreachable → `upstream_unavailable`; NOT_FOUND, PERMISSION_DENIED,
 * FAILED_PRECONDITION and a checksum mismatch (DATA_LOSS) → `upstream_rejected`.
 */
export function createSecretManagerSource(options: SecretManagerSourceOptions = {}): SecretSource {
  const timeoutMs = options.timeoutMs ?? 5000;
  const load = options.loadModule ?? (() => import('@google-cloud/secret-manager'));
  let client: Promise<Client> | undefined;

  const getClient = (): Promise<Client> => {
    client ??= (async () => {
      const { SecretManagerServiceClient } = await load();
      if (options.emulatorHost === undefined) return new SecretManagerServiceClient();
      const [{ credentials }, { PassThroughClient }] = await Promise.all([
        import('@grpc/grpc-js'),
        import('google-auth-library'),
      ]);
      const i = options.emulatorHost.lastIndexOf(':');
      return new SecretManagerServiceClient({
        apiEndpoint: options.emulatorHost.slice(0, i).replace(/^\[|\]$/g, ''),
        port: Number(options.emulatorHost.slice(i + 1)),
        sslCreds: credentials.createInsecure(),
        // A local emulator takes no credentials: without this the client looks for ADC and probes the metadata server.
        authClient: new PassThroughClient(),
      });
    })();
    client.catch(() => {
      client = undefined;
    });
    return client;
  };

  return {
    async read(ref) {
      let response: { payload?: { data?: Uint8Array | string | null; dataCrc32c?: unknown } | null };
      try {
        const c = await getClient();
        [response] = (await c.accessSecretVersion(
          { name: ref },
          { timeout: timeoutMs, maxRetries: 1 },
        )) as unknown as [typeof response];
      } catch (err) {
        throw mapError(err);
      }
      const data = response.payload?.data;
      if (data === undefined || data === null || typeof data === 'string') {
        throw new BrokerError('upstream_rejected', 'The key secret version has no payload.', {
          upstreamError: 'NOT_FOUND',
        });
      }
      const bytes = new Uint8Array(data);
      const expected = response.payload?.dataCrc32c;
      if (expected !== undefined && expected !== null) {
        const value =
          typeof expected === 'object' && 'value' in expected
            ? (expected as { value: unknown }).value
            : expected;
        if (value !== undefined && value !== null && Number(String(value)) !== crc32c(bytes)) {
          bytes.fill(0);
          throw new BrokerError(
            'upstream_rejected',
            "The key secret's payload failed its CRC32C check (corrupted in transit or at rest); retry, or add the key again.",
            { upstreamError: 'DATA_LOSS' },
          );
        }
      }
      return bytes;
    },
  };
}

function mapError(err: unknown): BrokerError {
  if (err instanceof BrokerError) return err;
  const code = typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 2;
  const cause = new Error(`gRPC ${NAMES[code] ?? code}`);
  if (UNAVAILABLE_CODES.has(code)) {
    return new BrokerError('upstream_unavailable', 'The secret store is unavailable; retry later.', {
      retryAfterSeconds: 5,
      cause,
    });
  }
  switch (code) {
    case 5:
      return new BrokerError(
        'upstream_rejected',
        "The key's secret version does not exist; check the policy's key reference.",
        { upstreamError: 'NOT_FOUND', cause },
      );
    case 7:
    case 16:
      return new BrokerError(
        'upstream_rejected',
        "The broker may not read the key's secret: grant its service account roles/secretmanager.secretAccessor on the secret.",
        { upstreamError: 'PERMISSION_DENIED', cause },
      );
    case 9:
      return new BrokerError(
        'upstream_rejected',
        "The key's secret version is disabled or destroyed; enable it or add a new version.",
        { upstreamError: 'FAILED_PRECONDITION', cause },
      );
    default:
      return new BrokerError('upstream_unavailable', 'The secret store failed; retry later.', {
        retryAfterSeconds: 5,
        cause,
      });
  }
}
