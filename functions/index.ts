/**
 * The broker's functions, all registered from this one source (docs/contract.md,
 * "Targets and paths"): `FUNCTION_TARGET=<name> npx functions-framework` serves one.
 * The example job (`delegatedJob`) is registered from here too, so one
 * package deploys everything; a process that serves only the job does not
 * load the broker's configuration.
 */
import * as functions from '@google-cloud/functions-framework';
import { ConfigError } from '../shared/errors.js';
import { installEdge } from './edge/edge.js';
import { createHandler, type FunctionTarget, JOB_TARGET, TARGET_ROUTES } from './handlers.js';
import { createFunctionLogger, createRuntime } from './runtime.js';

/** The broker targets this module registers; the Terraform checks compare `entry_point`s with them. */
export const TARGETS = Object.keys(TARGET_ROUTES) as FunctionTarget[];

export { JOB_TARGET } from './handlers.js';

// The framework takes its target from --target=NAME or FUNCTION_TARGET.
const serving =
  process.argv.find((a) => a.startsWith('--target='))?.slice('--target='.length) ??
  process.env['FUNCTION_TARGET'];

if (serving === JOB_TARGET) {
  // Imported only here: the job's client library pulls in google-auth-library, which the broker does not need.
  // The job reads no body, but the framework's parser would inflate any: the edge's cap protects it too.
  installEdge();
  const { createDelegatedJob, delegatedJobOptionsFromEnv } = await import('./examples/delegated-job.js');
  functions.http(JOB_TARGET, createDelegatedJob(delegatedJobOptionsFromEnv(process.env)));
} else {
  const log = createFunctionLogger(process.env, serving);
  let runtime: ReturnType<typeof createRuntime>;
  try {
    // The configuration checks depend on the target (the admin function requires a shared cache).
    runtime = createRuntime(process.env, log, serving);
  } catch (err) {
    if (err instanceof ConfigError) {
      log.log('CRITICAL', err.message, { problems: err.problems });
      // Stop the start with the one message that lists every problem (docs/configuration.md).
      process.exitCode = 78; // EX_CONFIG
    }
    throw err;
  }
  installEdge({ log: runtime.log, projectId: runtime.config.projectId });
  for (const target of TARGETS) functions.http(target, createHandler(runtime, target));
  runtime.warm();
}
