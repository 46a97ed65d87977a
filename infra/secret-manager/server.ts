import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { crc32c } from './crc32c.js';

const require = createRequire(import.meta.url);

/** A fault the stand-in plays on AccessSecretVersion, for reliability tests. */
export type SecretFault =
  | { kind: 'status'; code: number }
  | { kind: 'delay'; ms: number }
  | { kind: 'corrupt' };

/** The running Secret Manager stand-in. */
export interface SecretManagerStandIn {
  /** `127.0.0.1:PORT`: the value of `SECRET_MANAGER_EMULATOR_HOST`. */
  readonly host: string;
  readonly stats: { accessCalls: number };
  /** Adds a version to `projects/P/secrets/S` (creating the secret); returns the version's name. */
  put(secretName: string, data: string | Uint8Array): string;
  disable(versionName: string): void;
  destroy(versionName: string): void;
  injectFault(fault: SecretFault, times?: number): void;
  reset(): void;
  close(): Promise<void>;
}

interface Version {
  data: Buffer;
  state: 'ENABLED' | 'DISABLED' | 'DESTROYED';
  createTime: { seconds: number; nanos: number };
}

const SECRET = /^projects\/([^/]+)\/secrets\/([A-Za-z0-9_-]{1,255})$/;
const VERSION = /^(projects\/[^/]+\/secrets\/[A-Za-z0-9_-]{1,255})\/versions\/(latest|\d+)$/;

function loadService(): grpc.ServiceDefinition {
  // Both packages ship their .proto files under build/protos; find their roots from their main modules.
  const protosOf = (main: string) =>
    join(main.slice(0, main.lastIndexOf(`${sep}build${sep}`)), 'build', 'protos');
  const smMain = require.resolve('@google-cloud/secret-manager');
  const smRoot = protosOf(smMain);
  const gaxRoot = protosOf(require.resolve('google-gax', { paths: [dirname(smMain)] }));
  const definition = protoLoader.loadSync('google/cloud/secretmanager/v1/service.proto', {
    includeDirs: [smRoot, gaxRoot],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    google: {
      cloud: { secretmanager: { v1: { SecretManagerService: { service: grpc.ServiceDefinition } } } };
    };
  };
  return pkg.google.cloud.secretmanager.v1.SecretManagerService.service;
}

/**
 * A plaintext gRPC Secret Manager built from the `.proto` files that ship
 * inside `@google-cloud/secret-manager`, so the official client talks to it
 * unchanged through `SECRET_MANAGER_EMULATOR_HOST`. Serves CreateSecret,
 * AddSecretVersion, AccessSecretVersion (with CRC32C), GetSecretVersion and
 * Enable/Disable/DestroySecretVersion; faults can be injected on access.
 */
export async function startSecretManagerStandIn(
  options: { host?: string; port?: number } = {},
): Promise<SecretManagerStandIn> {
  const secrets = new Map<string, Version[]>();
  const faults: SecretFault[] = [];
  const stats = { accessCalls: 0 };
  const fail = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details });

  const createSecret = (name: string) => {
    if (!SECRET.test(name)) throw fail(grpc.status.INVALID_ARGUMENT, `invalid secret name ${name}`);
    if (!secrets.has(name)) secrets.set(name, []);
  };
  const addVersion = (secret: string, data: Buffer): string => {
    const versions = secrets.get(secret);
    if (!versions) throw fail(grpc.status.NOT_FOUND, `Secret [${secret}] not found.`);
    const now = Date.now();
    versions.push({ data, state: 'ENABLED', createTime: { seconds: Math.floor(now / 1000), nanos: 0 } });
    return `${secret}/versions/${versions.length}`;
  };
  const find = (name: string, forAccess: boolean): { version: Version; name: string } => {
    const m = VERSION.exec(name);
    if (!m) throw fail(grpc.status.INVALID_ARGUMENT, `invalid version name ${name}`);
    const versions = secrets.get(m[1]!);
    if (!versions) throw fail(grpc.status.NOT_FOUND, `Secret [${m[1]}] not found or has no versions.`);
    if (m[2] === 'latest') {
      for (let i = versions.length - 1; i >= 0; i--) {
        if (versions[i]!.state === 'ENABLED')
          return { version: versions[i]!, name: `${m[1]}/versions/${i + 1}` };
      }
      throw fail(grpc.status.NOT_FOUND, `Secret [${m[1]}] has no enabled versions.`);
    }
    const n = Number(m[2]);
    const version = versions[n - 1];
    if (!version) throw fail(grpc.status.NOT_FOUND, `Secret Version [${name}] not found.`);
    if (forAccess && version.state !== 'ENABLED') {
      throw fail(grpc.status.FAILED_PRECONDITION, `Secret Version [${name}] is in ${version.state} state.`);
    }
    return { version, name: `${m[1]}/versions/${n}` };
  };
  const describe = (name: string, v: Version) => ({ name, state: v.state, createTime: v.createTime });
  const setState = (name: string, state: Version['state']) => {
    const { version, name: full } = find(name, false);
    if (version.state === 'DESTROYED')
      throw fail(grpc.status.FAILED_PRECONDITION, `Secret Version [${full}] is destroyed.`);
    version.state = state;
    if (state === 'DESTROYED') version.data = Buffer.alloc(0);
    return describe(full, version);
  };

  type Call = grpc.ServerUnaryCall<Record<string, unknown>, unknown>;
  const unary =
    (fn: (req: Record<string, unknown>) => unknown | Promise<unknown>) =>
    (call: Call, callback: grpc.sendUnaryData<unknown>) => {
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          (value) => callback(null, value),
          (err: unknown) => callback(err as grpc.ServiceError),
        );
    };

  const service = loadService();
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(service)) {
    handlers[method] = unary(() => {
      throw fail(grpc.status.UNIMPLEMENTED, `${method} is not implemented by the stand-in`);
    });
  }
  Object.assign(handlers, {
    CreateSecret: unary((req) => {
      const name = `${req['parent']}/secrets/${req['secretId']}`;
      if (secrets.has(name)) throw fail(grpc.status.ALREADY_EXISTS, `Secret [${name}] already exists.`);
      createSecret(name);
      return { name, replication: { automatic: {} } };
    }),
    AddSecretVersion: unary((req) => {
      const payload = req['payload'] as { data?: Buffer } | undefined;
      const name = addVersion(String(req['parent']), Buffer.from(payload?.data ?? Buffer.alloc(0)));
      return describe(name, find(name, false).version);
    }),
    GetSecretVersion: unary((req) => {
      const { version, name } = find(String(req['name']), false);
      return describe(name, version);
    }),
    EnableSecretVersion: unary((req) => setState(String(req['name']), 'ENABLED')),
    DisableSecretVersion: unary((req) => setState(String(req['name']), 'DISABLED')),
    DestroySecretVersion: unary((req) => setState(String(req['name']), 'DESTROYED')),
    AccessSecretVersion: unary(async (req) => {
      stats.accessCalls++;
      const fault = faults.shift();
      if (fault?.kind === 'status') throw fail(fault.code, `injected fault ${grpc.status[fault.code]}`);
      if (fault?.kind === 'delay') await new Promise((r) => setTimeout(r, fault.ms));
      const { version, name } = find(String(req['name']), true);
      const checksum = crc32c(version.data) + (fault?.kind === 'corrupt' ? 1 : 0);
      return { name, payload: { data: version.data, dataCrc32c: String(checksum >>> 0) } };
    }),
  });

  const server = new grpc.Server();
  server.addService(service, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${options.host ?? '127.0.0.1'}:${options.port ?? 0}`,
      grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );

  return {
    host: `${options.host ?? '127.0.0.1'}:${port}`,
    stats,
    put(secretName, data) {
      createSecret(secretName);
      return addVersion(secretName, Buffer.from(data));
    },
    disable: (name) => void setState(name, 'DISABLED'),
    destroy: (name) => void setState(name, 'DESTROYED'),
    injectFault(fault, times = 1) {
      for (let i = 0; i < times; i++) faults.push(fault);
    },
    reset() {
      faults.length = 0;
    },
    close: async () => {
      server.forceShutdown();
    },
  };
}
