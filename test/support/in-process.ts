/**
 * A broker built in this process: the real runtime from an environment (the
 * stand-ins' URLs), the real handlers registered with the functions
 * framework, served by its `getTestServer()` behind the broker's own edge,
 * on a random loopback port. What a spawned broker process tests, minus the
 * process: use `infra/broker-process.ts` only for cold start, the bundle,
 * signals and many instances.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as functions from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { installEdge } from '../../functions/edge/edge.js';
import { createHandler, type FunctionTarget } from '../../functions/handlers.js';
import { createRuntime, type Runtime } from '../../functions/runtime.js';
import { captureLogLines } from '../../infra/capture.js';
import { createLogger } from '../../shared/log.js';

/** A broker served in this process. */
export interface InProcessBroker {
  readonly url: string;
  /** Every log line it wrote so far (the handler's and the edge's). */
  readonly lines: string[];
  readonly runtime: Runtime;
  close(): Promise<void>;
}

let registered = 0;

/** Builds the runtime from `env`, registers `target`'s handler and serves it on 127.0.0.1. Throws ConfigError as a start would. */
export async function startInProcessBroker(
  env: Record<string, string | undefined>,
  target: FunctionTarget = 'broker',
): Promise<InProcessBroker> {
  const lines: string[] = [];
  const log = createLogger({
    write: (text) => {
      const fresh = text.split('\n').filter((l) => l !== '');
      lines.push(...fresh);
      captureLogLines(fresh);
    },
  });
  const runtime = createRuntime(env, log, target);
  installEdge({ log, projectId: runtime.config.projectId });
  const name = `${target}-in-process-${++registered}`;
  functions.http(name, createHandler(runtime, target));
  const server: Server = getTestServer(name);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    lines,
    runtime,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
