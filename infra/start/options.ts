import { parseArgs } from 'node:util';

/**
 * Where each service of `npm start` listens, as an offset from `--port`:
 * the broker on N, the stand-ins on N+1…. A new stand-in takes the next
 * free offset here, and its port is then fixed like the others, so that
 * saved credential files and exported variables keep working across restarts.
 */
export const PORT_OFFSETS = {
  broker: 0,
  google: 1,
  iam: 2,
  sts: 3,
  storage: 4,
  /** The broker's own metadata server (its identity, for keyless accounts). */
  brokerMetadata: 5,
  secretManager: 6,
  /** The demo caller's metadata server: where a caller's ID token comes from, as on Google Cloud. */
  callerMetadata: 7,
  /** A GitHub-Actions-like OIDC issuer: the demo's job outside Google Cloud. */
  github: 8,
} as const;

/** A service of the local stack. */
export type Service = keyof typeof PORT_OFFSETS;

/** The default `--port`: fixed, so that a saved credential file works after the next `npm start`. */
export const DEFAULT_PORT = 8480;

/** How `npm start` runs. */
export interface StartOptions {
  /** Run the demo and exit. */
  once: boolean;
  /** Each service's port; 0 for a random free one (`--port 0`). */
  ports: Record<Service, number>;
  /** The user's policy instead of the demo's. */
  policyFile?: string;
  /** Where the demo's policy, keys and the broker's log go; default `.tmp/demo` in the repository. */
  dir?: string;
}

const USAGE = 'usage: npm start -- [--port N] [--policy FILE] [--dir DIR] [--once]';

/** Reads `npm start`'s flags. Throws an Error with the usage line on any problem. */
export function parseStartOptions(argv: readonly string[]): StartOptions {
  let values: { once?: boolean; port?: string; policy?: string; dir?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        once: { type: 'boolean' },
        port: { type: 'string' },
        policy: { type: 'string' },
        dir: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new Error(`${(err as Error).message.split('.')[0]}\n${USAGE}`);
  }
  if (values.help) throw new Error(USAGE);
  const base = values.port === undefined ? DEFAULT_PORT : Number(values.port);
  const last = Math.max(...Object.values(PORT_OFFSETS));
  if (!Number.isInteger(base) || base < 0 || (base !== 0 && (base < 1024 || base + last > 65535)))
    throw new Error(`--port takes 0 (random ports) or a port from 1024 to ${65535 - last}\n${USAGE}`);
  const ports = Object.fromEntries(
    Object.entries(PORT_OFFSETS).map(([service, offset]) => [service, base === 0 ? 0 : base + offset]),
  ) as Record<Service, number>;
  if (values.policy === '') throw new Error(`--policy takes a file\n${USAGE}`);
  if (values.dir === '') throw new Error(`--dir takes a folder\n${USAGE}`);
  return {
    once: values.once === true,
    ports,
    ...(values.policy ? { policyFile: values.policy } : {}),
    ...(values.dir ? { dir: values.dir } : {}),
  };
}
