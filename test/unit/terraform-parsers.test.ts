/**
 * The checkers' own parsers, checked: the HCL reader against the official
 * HCL parser (hcl2json) on every file of terraform/, and the filter
 * evaluator on the Logging query language's documented rules.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '@cdktf/hcl2json';
import { describe, expect, it } from 'vitest';
import { evaluateText } from '../support/tf-eval.js';
import { extract, matches, parseFilter, toLogEntry } from '../support/tf-logging-filter.js';
import { type Body, parseBody } from '../support/tf-syntax.js';

const DIR = join(fileURLToPath(new URL('../../', import.meta.url)), 'terraform');
const files = readdirSync(DIR).filter((f) => f.endsWith('.tf'));

/** Every attribute and block path our parser reads, e.g. resource.google_x.y.build_config.source. */
function ourPaths(body: Body, prefix: string[] = []): string[] {
  const out: string[] = [];
  for (const a of body.attrs) out.push([...prefix, a.name].join('.'));
  for (const b of body.blocks) {
    const path = [...prefix, b.type, ...b.labels];
    out.push(path.join('.'));
    out.push(...ourPaths(b.body, path));
  }
  return out;
}

/** The same paths in hcl2json's output, where blocks (and lists of objects) are arrays of objects. */
function officialPaths(value: unknown, prefix: string[] = []): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown, p: string[]) => {
    if (Array.isArray(v)) for (const x of v) walk(x, p);
    else if (v && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) {
        out.add([...p, k].join('.'));
        walk(x, [...p, k]);
      }
  };
  walk(value, prefix);
  return out;
}

describe('the HCL reader agrees with the official parser', () => {
  it.each(files)('%s: every argument and block it reads is where hcl2json has it', async (file) => {
    const text = readFileSync(join(DIR, file), 'utf8');
    const ours = ourPaths(parseBody(text, file));
    const official = officialPaths(await parse(file, text));
    expect(ours.length).toBeGreaterThan(5);
    expect(ours.filter((p) => !official.has(p))).toEqual([]);
    // And every top-level block hcl2json sees, we see.
    const top = (paths: Iterable<string>) =>
      [...paths].filter((p) =>
        /^(resource|data|ephemeral|variable|output|provider)\.[^.]+(\.[^.]+)?$/.test(p),
      );
    for (const p of top(official))
      if (!/^(resource|data|ephemeral)\.[^.]+$/.test(p)) expect(ours, p).toContain(p);
  });

  it('tells a block from a list of objects, which hcl2json cannot', () => {
    const body = parseBody('x = [{ a = 1 }]\ny {\n  a = 1\n}\n', 't.tf');
    expect(body.attrs.map((a) => a.name)).toEqual(['x']);
    expect(body.blocks.map((b) => b.type)).toEqual(['y']);
  });

  it('evaluates expressions as Terraform does', () => {
    const scope = { var: { xs: ['a', 'b'], m: { k: 'v' }, n: null } };
    // biome-ignore lint/suspicious/noTemplateCurlyInString: HCL interpolations, not JavaScript ones
    expect(evaluateText('[for i, x in var.xs : "${i}=${x}" if x != "b"]', scope)).toEqual(['0=a']);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: HCL interpolations, not JavaScript ones
    expect(evaluateText('{ for k, v in var.m : "${k}x" => v }', scope)).toEqual({ kx: 'v' });
    expect(evaluateText('can(regex("^a$", "b"))', scope)).toBe(false);
    expect(evaluateText('var.n == null ? "none" : var.n', scope)).toBe('none');
    expect(evaluateText('length(setproduct(var.xs, ["x", "y"]))', scope)).toBe(4);
    expect(() => evaluateText('nosuchfunction(1)', scope)).toThrow(/not implemented/);
  });
});

describe('the filter evaluator follows the Logging query language', () => {
  const entry = toLogEntry(
    JSON.stringify({
      severity: 'ERROR',
      message: 'request failed',
      httpRequest: { status: 503, latency: '0.5s' },
      'logging.googleapis.com/labels': { tier: 'gold' },
      audit: { operation: 'token', error: 'upstream_unavailable', latencyMs: 500, scopes: ['a', 'b'] },
    }),
    { projectId: 'p', service: 'token-broker-token', region: 'europe-west1' },
  );

  it('lifts the special fields out of jsonPayload, as Cloud Run stores the line', () => {
    expect(entry['severity']).toBe('ERROR');
    expect(entry['labels']).toEqual({ tier: 'gold' });
    expect(entry['jsonPayload']).toEqual({
      message: 'request failed',
      audit: { operation: 'token', error: 'upstream_unavailable', latencyMs: 500, scopes: ['a', 'b'] },
    });
    expect(entry['logName']).toBe('projects/p/logs/run.googleapis.com%2Fstdout');
  });

  it.each([
    ['jsonPayload.audit.error="upstream_unavailable"', true],
    ['jsonPayload.audit.error="upstream"', false],
    ['jsonPayload.audit.error:"UPSTREAM"', true], // has: a case-insensitive substring
    ['jsonPayload.audit.cache:*', false], // presence
    ['jsonPayload.audit.error:*', true],
    ['httpRequest.status>=500', true], // numbers compare as numbers
    ['httpRequest.status<60', false],
    ['jsonPayload.audit.scopes="b"', true], // any element of a list
    ['labels.tier="gold"', true],
    ['resource.labels.service_name=~"^token-broker-(token|jwt)$"', true],
    ['resource.labels.service_name!~"broker"', false],
    ['NOT severity=ERROR', false],
    ['-severity=ERROR', false],
    // OR binds tighter than AND: a AND (b OR c), not (a AND b) OR c.
    ['severity=INFO AND httpRequest.status=503 OR httpRequest.status=200', false],
    ['httpRequest.status=503 OR httpRequest.status=200 AND severity=INFO', false],
    ['(severity=INFO AND httpRequest.status=503) OR httpRequest.status=503', true],
    ['severity=ERROR httpRequest.status=503', true], // juxtaposition is AND
    ['jsonPayload.audit.missing!="x"', true],
  ])('%s → %s', (filter, expected) => {
    expect(matches(filter, entry)).toBe(expected);
  });

  it('reads the documented example "a OR NOT b AND NOT c OR d" as (a OR (NOT b)) AND ((NOT c) OR d)', () => {
    for (let bits = 0; bits < 16; bits++) {
      const doc = {
        a: String(bits & 1),
        b: String((bits >> 1) & 1),
        c: String((bits >> 2) & 1),
        d: String((bits >> 3) & 1),
      };
      const [a, b, c, d] = [doc.a === '1', doc.b === '1', doc.c === '1', doc.d === '1'];
      expect(matches('a="1" OR NOT b="1" AND NOT c="1" OR d="1"', doc), JSON.stringify(doc)).toBe(
        (a || !b) && (!c || d),
      );
    }
  });

  it('refuses syntax outside the subset rather than guessing', () => {
    expect(() => parseFilter('"free text"')).toThrow();
    expect(() => parseFilter('severity=(ERROR OR WARNING)')).toThrow();
  });

  it('extracts as log-based metrics do', () => {
    expect(extract('EXTRACT(jsonPayload.audit.latencyMs)', entry)).toBe('500');
    expect(extract('REGEXP_EXTRACT(httpRequest.status, "^([1-5])[0-9][0-9]$")', entry)).toBe('5');
    expect(extract('REGEXP_EXTRACT(httpRequest.latency, "([0-9.]+)s")', entry)).toBe('0.5');
    expect(extract('EXTRACT(jsonPayload.audit.cache)', entry)).toBeUndefined();
    expect(() => extract('REGEXP_EXTRACT(httpRequest.status, "[0-9]+")', entry)).toThrow(/one capture group/);
  });
});
