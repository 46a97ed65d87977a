/**
 * The log-based metrics, alert policies and dashboard of terraform/monitoring.tf,
 * evaluated on the lines a real broker printed: a request of each kind (hit,
 * miss, denial, each error class), each line turned into the LogEntry Cloud
 * Run's agent would store, then each filter parsed and evaluated, each
 * extractor applied, and the resulting metric points fed to the alert and
 * dashboard filters. What each entry should yield is taken from the HTTP
 * answers, not from the log lines.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { evaluate, instanceAttribute, planScope, tfvars, variableValues } from '../support/tf-eval.js';
import { extract, matches, toLogEntry } from '../support/tf-logging-filter.js';
import { attr, blocks, parseBody, readModule } from '../support/tf-syntax.js';
import {
  BIGQUERY,
  BILLING,
  CALENDAR,
  DRIVE,
  OPS,
  PLATFORM,
  post,
  REPORTING,
  type Stack,
  SYNC_JOB,
  startStack,
} from './support/stack.js';

const DIR = join(fileURLToPath(new URL('../../', import.meta.url)), 'terraform');
const m = readModule(DIR);
const given = {
  ...tfvars(readFileSync(join(DIR, 'examples/single-tenant.tfvars'), 'utf8'), 'single', parseBody),
  upstash_redis_rest_token: 'rest-token',
};
const vars = variableValues(m, given);
const projectId = String(vars['project_id']);
const prefix = String(vars['name_prefix']);
// Metric names are arguments, known at plan: resolve them so that alert and dashboard filters are concrete.
const metricName = (r: string) =>
  String(instanceAttribute(m, `google_logging_metric.${r}`, '', 'name', planScope(m, vars)));
const scope = planScope(m, vars, {
  google_logging_metric: {
    requests: { name: metricName('requests') },
    mint_latency: { name: metricName('mint_latency') },
  },
});
const metricAttr = (r: string, name: string) =>
  instanceAttribute(m, `google_logging_metric.${r}`, '', name, scope);

interface Answer {
  name: string;
  status: number;
  requestId: string;
  cacheStatus: string | null;
  error: string | undefined;
  upstreamError: string | undefined;
}

describe('log-based metrics, alerts and dashboard on real broker lines', () => {
  let stack: Stack;
  let broker: InProcessBroker;
  const answers: Answer[] = [];
  let entries: Record<string, unknown>[];
  const entryOf = (a: Answer) => {
    const e = entries.find((x) => (x['jsonPayload'] as Record<string, unknown>)['requestId'] === a.requestId);
    if (!e) throw new Error(`no log line for ${a.name}`);
    return e;
  };
  const answer = (name: string) => answers.find((a) => a.name === name)!;

  beforeAll(async () => {
    stack = await startStack();
    broker = await stack.serveBroker('broker');
    const billing = await stack.callerToken(BILLING);
    const ask = async (name: string, path: string, body: unknown, token?: string) => {
      const r = await post(`${broker.url}${path}`, body, token === undefined ? {} : { token });
      answers.push({
        name,
        status: r.status,
        requestId: String(r.headers.get('x-request-id')),
        cacheStatus: r.headers.get('cache-status'),
        error: r.json['error'] as string | undefined,
        upstreamError: r.json['upstream_error'] as string | undefined,
      });
    };
    await ask('miss', '/token', { serviceAccount: REPORTING, scopes: [BIGQUERY] }, billing);
    await ask('hit', '/token', { serviceAccount: REPORTING, scopes: [BIGQUERY] }, billing);
    await ask('denied', '/token', { serviceAccount: REPORTING, scopes: [DRIVE] }, billing);
    await ask('no credential', '/token', { serviceAccount: REPORTING, scopes: [BIGQUERY] });
    await ask('bad request', '/token', { serviceAccount: REPORTING }, billing);
    const platform = await stack.callerToken(PLATFORM);
    await ask(
      'idtoken miss',
      '/idtoken',
      { tenant: 'blue', audience: 'https://drive.googleapis.com/' },
      platform,
    );
    await ask(
      'refused by Google',
      '/token',
      { serviceAccount: REPORTING, scopes: [CALENDAR], subject: 'nobody@acme.com' },
      await stack.callerToken(SYNC_JOB),
    );
    stack.google.injectFault({ kind: 'status', status: 503 }, 20);
    await ask('Google down', '/token', { tenant: 'green', scopes: [DRIVE] }, platform);
    stack.google.reset();
    await ask('purge', '/admin/purge', { all: true }, await stack.callerToken(OPS));
    await new Promise((r) => setTimeout(r, 200)); // the logger writes once per turn of the event loop
    const where = { projectId, service: `${prefix}-broker`, region: String(vars['region']) };
    entries = broker.lines.map((l) => toLogEntry(l, where));
  }, 60_000);
  afterAll(async () => stack?.close());

  it('made the requests it meant to (the answers the expectations come from)', () => {
    expect(answers.map((a) => [a.name, a.status])).toEqual([
      ['miss', 200],
      ['hit', 200],
      ['denied', 403],
      ['no credential', 401],
      ['bad request', 400],
      ['idtoken miss', 200],
      ['refused by Google', 502],
      ['Google down', 503],
      ['purge', 200],
    ]);
    expect(answer('miss').cacheStatus).toBe('broker; fwd=miss');
    expect(answer('hit').cacheStatus).toBe('broker; hit');
    expect(answer('Google down').error).toBe('upstream_unavailable');
    expect(answer('refused by Google').upstreamError).toBe('invalid_grant');
  });

  it('counts every request line, and nothing else', () => {
    const filter = String(metricAttr('requests', 'filter'));
    expect(filter).toContain(`projects/${projectId}/logs/run.googleapis.com%2Fstdout`);
    const counted = entries.filter((e) => matches(filter, e));
    expect(counted.map((e) => (e['jsonPayload'] as Record<string, unknown>)['requestId']).sort()).toEqual(
      answers.map((a) => a.requestId).sort(),
    );
    // The same line from another service, from Cloud Run's own request log, or as plain text, is not counted.
    const line = broker.lines.find((l) => l.includes(answer('miss').requestId))!;
    const base = { projectId, region: 'europe-west1' };
    expect(matches(filter, toLogEntry(line, { ...base, service: `${prefix}-broker` }))).toBe(true);
    expect(matches(filter, toLogEntry(line, { ...base, service: `${prefix}-delegated-job` }))).toBe(false);
    expect(matches(filter, toLogEntry(line, { ...base, service: `other-${prefix}-broker` }))).toBe(false);
    expect(
      matches(
        filter,
        toLogEntry(line, { ...base, service: `${prefix}-broker`, log: 'run.googleapis.com/requests' }),
      ),
    ).toBe(false);
    expect(matches(filter, toLogEntry('listening on 8080', { ...base, service: `${prefix}-broker` }))).toBe(
      false,
    );
  });

  it('labels each request by operation, decision, cache, error and status class as the answer says', () => {
    const extractors = metricAttr('requests', 'label_extractors') as Record<string, string>;
    const declared = blocks(
      blocks(m.resources.get('google_logging_metric.requests')!.body, 'metric_descriptor')[0]!.body,
      'dynamic',
    )[0]!;
    expect(Object.keys(extractors).sort()).toEqual(
      (evaluate(attr(declared.body, 'for_each')!, {}) as string[]).slice().sort(),
    );
    const labels = (a: Answer) =>
      Object.fromEntries(
        Object.entries(extractors)
          .map(([k, x]) => [k, extract(x, entryOf(a))])
          .filter(([, v]) => v !== undefined),
      );
    for (const a of answers) {
      const l = labels(a);
      expect(l['function'], a.name).toBe(`${prefix}-broker`);
      expect(l['status_class'], a.name).toBe(String(a.status)[0]);
      expect(l['error'], a.name).toBe(a.error);
      expect(l['upstream_error'], a.name).toBe(a.upstreamError);
      const cache =
        a.cacheStatus === 'broker; hit' ? 'hit' : a.cacheStatus === 'broker; fwd=miss' ? 'miss' : undefined;
      expect(l['cache'], a.name).toBe(cache);
    }
    expect(labels(answer('denied'))).toMatchObject({
      operation: 'token',
      decision: 'deny',
      error: 'access_denied',
    });
    expect(labels(answer('miss'))).toMatchObject({ operation: 'token', decision: 'allow' });
    expect(labels(answer('idtoken miss'))).toMatchObject({ operation: 'idtoken', cache: 'miss' });
    expect(labels(answer('purge'))).toMatchObject({ operation: 'purge', decision: 'allow' });
    expect(labels(answer('no credential'))['decision']).toBeUndefined();
  });

  it('records mint latency for exactly the requests answered by a mint, as a number of ms', () => {
    const filter = String(metricAttr('mint_latency', 'filter'));
    const minted = answers.filter((a) => a.cacheStatus === 'broker; fwd=miss');
    expect(minted.map((a) => a.name)).toEqual(['miss', 'idtoken miss']);
    const matched = entries.filter((e) => matches(filter, e));
    expect(matched.map((e) => (e['jsonPayload'] as Record<string, unknown>)['requestId']).sort()).toEqual(
      minted.map((a) => a.requestId).sort(),
    );
    const extractor = String(metricAttr('mint_latency', 'value_extractor'));
    for (const e of matched) {
      const value = Number(extract(extractor, e));
      expect(value).toBeGreaterThan(0);
      expect(value).toBeLessThan(10_000);
      // The same figure as the request's latency that Cloud Logging shows (httpRequest.latency, in seconds).
      const latency = Number(
        String((e['httpRequest'] as Record<string, unknown>)['latency']).replace(/s$/, ''),
      );
      expect(Math.abs(value / 1000 - latency)).toBeLessThan(0.001);
    }
  });

  /** The metric points (one per counted line) that Monitoring would hold, with their labels. */
  function points() {
    const extractors = metricAttr('requests', 'label_extractors') as Record<string, string>;
    const type = `logging.googleapis.com/user/${metricName('requests')}`;
    return entries
      .filter((e) => matches(String(metricAttr('requests', 'filter')), e))
      .map((e) => ({
        requestId: (e['jsonPayload'] as Record<string, unknown>)['requestId'],
        metric: {
          type,
          label: Object.fromEntries(
            Object.entries(extractors)
              .map(([k, x]) => [k, extract(x, e)])
              .filter(([, v]) => v !== undefined),
          ),
        },
        resource: e['resource'],
      }));
  }
  const alertFilter = (name: string) => {
    const conditions = blocks(m.resources.get(`google_monitoring_alert_policy.${name}`)!.body, 'conditions');
    expect(conditions).toHaveLength(1);
    const threshold = blocks(conditions[0]!.body, 'condition_threshold')[0]!.body;
    return String(evaluate(attr(threshold, 'filter')!, scope));
  };
  const idsOf = (...names: string[]) => names.map((n) => answer(n).requestId).sort();
  const matchedBy = (filter: string) =>
    points()
      .filter((p) => matches(filter, p))
      .map((p) => p.requestId)
      .sort();

  it('alerts on upstream_unavailable, on any 5xx and on denials, from the points those lines make', () => {
    expect(matchedBy(alertFilter('upstream_unavailable'))).toEqual(idsOf('Google down'));
    expect(matchedBy(alertFilter('server_errors'))).toEqual(idsOf('refused by Google', 'Google down'));
    expect(matchedBy(alertFilter('denial_spike'))).toEqual(idsOf('denied'));
  });

  it('draws the dashboard from those points: hit ratio, mints, denials and the latency p99', () => {
    const dashboard = JSON.parse(
      String(instanceAttribute(m, 'google_monitoring_dashboard.broker', '', 'dashboard_json', scope)),
    ) as { mosaicLayout: { tiles: { widget: { title: string; xyChart: { dataSets: unknown[] } } }[] } };
    const tiles = Object.fromEntries(
      dashboard.mosaicLayout.tiles.map((t) => [t.widget.title, t.widget.xyChart.dataSets[0]]),
    );
    const query = (title: string) =>
      (tiles[title] as { timeSeriesQuery: Record<string, Record<string, unknown>> }).timeSeriesQuery;
    const ratio = query('Cache hit ratio (token, jwt, idtoken)')['timeSeriesFilterRatio']!;
    const num = (ratio['numerator'] as { filter: string }).filter;
    const den = (ratio['denominator'] as { filter: string }).filter;
    expect(matchedBy(num)).toEqual(idsOf('hit'));
    expect(matchedBy(den)).toEqual(idsOf('miss', 'hit', 'idtoken miss'));
    expect(matchedBy((query('Mints per minute')['timeSeriesFilter'] as { filter: string }).filter)).toEqual(
      idsOf('miss', 'idtoken miss'),
    );
    expect(matchedBy((query('Denials per minute')['timeSeriesFilter'] as { filter: string }).filter)).toEqual(
      idsOf('denied'),
    );
    const p99 = query('Mint latency p99 (ms)')['timeSeriesFilter'] as {
      filter: string;
      aggregation: Record<string, string>;
    };
    expect(p99.filter).toBe(`metric.type="logging.googleapis.com/user/${metricName('mint_latency')}"`);
    expect(p99.aggregation['crossSeriesReducer']).toBe('REDUCE_PERCENTILE_99');
    expect(metricAttr('mint_latency', 'metric_descriptor.value_type')).toBe('DISTRIBUTION');
  });
});
