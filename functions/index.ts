/**
 * The broker's functions, all registered from this one source (CONTRACT.md,
 * "Entry points"): `FUNCTION_TARGET=<name> npx functions-framework` serves one.
 */
import * as functions from '@google-cloud/functions-framework';
import { ConfigError } from '../shared/errors.js';
import { createLogger } from '../shared/log.js';
import { createHandler, TARGET_ROUTES, type Target } from './handlers.js';
import { installJsonFinalHandler } from './json-final-handler.js';
import { createRuntime, type Runtime } from './runtime.js';

installJsonFinalHandler();

const log = createLogger();
let runtime: Runtime;
try {
  runtime = createRuntime(process.env, log);
} catch (err) {
  if (err instanceof ConfigError) {
    log.log('CRITICAL', err.message, { problems: err.problems });
    // Stop the start with the one message that lists every problem (CONTRACT.md, "Configuration").
    process.exitCode = 78; // EX_CONFIG
  }
  throw err;
}

/** The names this module registers; the Terraform checks compare `entry_point`s with it. */
export const TARGETS = Object.keys(TARGET_ROUTES) as Target[];

for (const target of TARGETS) functions.http(target, createHandler(runtime, target));
