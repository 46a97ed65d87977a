/**
 * A broker built in this process: the real runtime from an environment (the
 * stand-ins' URLs), the real handlers registered with the functions
 * framework and served by its `getTestServer()` behind the broker's own edge,
 * on a random loopback port. What a spawned broker process gives a test,
 * minus the process: `broker-process.ts` is for cold start, the bundle,
 * signals, memory and many instances.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as functions from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { installEdge } from '../functions/edge/edge.js';
import { createHandler, type FunctionTarget } from '../functions/handlers.js';
import { createFunctionLogger, createRuntime, type Runtime } from '../functions/runtime.js';
import { captureLogLines } from './capture.js';

/** A broker served in this process. */
export interface InProcessBroker {
  readonly url: string;
  readonly port: number;
  /** Every log line it wrote so far (the handler's, the edge's, and those of its start). */
  readonly lines: string[];
  readonly runtime: Runtime;
  stop(): Promise<void>;
}

let registered = 0;

/**
 * Builds the runtime from `env`, registers `target`'s handler and serves it
 * on 127.0.0.1. Throws ConfigError as a start would.
 */
export async function serveInProcess(
  env: Record<string, string | undefined>,
  target: FunctionTarget = 'broker',
): Promise<InProcessBroker> {
  const lines: string[] = [];
  const log = createFunctionLogger(env, target, (text) => {
    const fresh = text.split('\n').filter((l) => l !== '');
    lines.push(...fresh);
    captureLogLines(fresh);
  });
  const runtime = createRuntime(env, log, target);
  installEdge({ log, projectId: runtime.config.projectId });
  const name = `${target}-in-process-${++registered}`;
  functions.http(name, createHandler(runtime, target));
  const server: Server = getTestServer(name);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  runtime.warm();
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    lines,
    runtime,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
