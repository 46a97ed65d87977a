import type { Request, Response } from '@google-cloud/functions-framework';
import { BrokerClient, BrokerClientError, googleIdTokenSource } from '../../packages/client/src/index.js';

/** Settings of the example job, from its environment (see terraform/job.tf). */
export interface DelegatedJobOptions {
  /** The broker's token endpoint. */
  brokerUrl: string;
  /** The audience of the job's ID token for the broker (the broker function's URL). */
  brokerAudience: string;
  serviceAccount: string;
  subject: string;
  scopes: string[];
  /** The Google API the job calls with the delegated token. */
  apiUrl: string;
  idToken?: () => Promise<string>;
  fetch?: typeof fetch;
}

/**
 * An example scheduled job: Cloud Scheduler calls it with an OIDC token
 * (checked by Cloud Run IAM); it asks the broker for a domain-wide-delegated
 * token (`subject`) and calls a Google API with it. It never sees a key.
 */
export function createDelegatedJob(
  options: DelegatedJobOptions,
): (req: Request, res: Response) => Promise<void> {
  // Made on the first run, so that a process with a missing setting still starts and says what is missing.
  let broker: BrokerClient | undefined;
  return async (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    try {
      broker ??= new BrokerClient({
        endpoints: { token: options.brokerUrl },
        idToken: options.idToken ?? googleIdTokenSource(options.brokerAudience),
        ...(options.fetch ? { fetch: options.fetch } : {}),
      });
    } catch (err) {
      // The client refuses a missing or non-https broker URL before sending anything.
      res
        .status(500)
        .json({ error: 'job_misconfigured', error_description: `JOB_BROKER_URL: ${(err as Error).message}` });
      return;
    }
    try {
      const token = await broker.accessToken({
        serviceAccount: options.serviceAccount,
        scopes: options.scopes,
        subject: options.subject,
        minLifetimeSeconds: 600,
      });
      const api = await (options.fetch ?? fetch)(options.apiUrl, {
        headers: { Authorization: `Bearer ${token.token}` },
        signal: AbortSignal.timeout(30_000),
      });
      const body = (await api.json().catch(() => ({}))) as Record<string, unknown>;
      res.status(api.ok ? 200 : 502).json({
        api_status: api.status,
        items: Array.isArray(body['items']) ? body['items'].length : undefined,
        subject: options.subject,
      });
    } catch (err) {
      const e = err instanceof BrokerClientError ? err : undefined;
      res
        .status(e?.retryable ? 503 : 502)
        .json({ error: e?.code ?? 'job_failed', error_description: e?.message ?? 'The job failed.' });
    }
  };
}

/** The job's options from its environment. */
export function delegatedJobOptionsFromEnv(env: NodeJS.ProcessEnv): DelegatedJobOptions {
  return {
    brokerUrl: env['JOB_BROKER_URL'] ?? '',
    brokerAudience: env['JOB_BROKER_AUDIENCE'] ?? env['JOB_BROKER_URL'] ?? '',
    serviceAccount: env['JOB_SERVICE_ACCOUNT'] ?? '',
    subject: env['JOB_SUBJECT'] ?? '',
    scopes: (env['JOB_SCOPES'] ?? '').split(' ').filter(Boolean),
    apiUrl: env['JOB_API_URL'] ?? 'https://www.googleapis.com/calendar/v3/users/me/calendarList',
  };
}
