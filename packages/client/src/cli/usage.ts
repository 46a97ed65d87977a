/** `broker-token --help`: the commands, flags, environment variables and exit codes. */
import { MAX_LIFETIME_SECONDS, MAX_MIN_LIFETIME_SECONDS } from '../../../wire/wire.js';
import { FIELDS } from './output.js';

/** gcloud's default scope. */
export const DEFAULT_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

/** A bad command line: the CLI prints it and exits 2 without sending anything. */
export class UsageError extends Error {}

/** Exit codes, as `--help` lists them. */
export const EXIT = { ok: 0, refused: 1, usage: 2, tempfail: 75 } as const;

/** What `--help` prints. */
export const USAGE = `usage: broker-token [COMMAND] [ACCOUNT] [FLAGS]

Commands:
  print-access-token    an OAuth 2.0 access token (the default command)
  print-identity-token  a Google-signed ID token for --audiences
  print-jwt             a self-signed JWT for --audiences, or for --scopes
  credential-config     write an external_account credential file, so that Google's
                        auth libraries (any language, gcloud) get tokens from the broker

Who the token is for (exactly one):
  ACCOUNT                               a service account's email, as gcloud's positional ACCOUNT
  --impersonate-service-account EMAIL   the same (alias: --service-account). One account: the
                                        broker's policy sets any delegation chain, so a chain
                                        (A,B,C) or --delegates is a usage error
  --tenant ID                           a tenant the broker's policy maps to one account

Flags:
  --url URL                the broker's base URL (paths /token, /jwt, /idtoken, /sts);
                           https:, or http: on loopback only [$BROKER_URL]
  --scopes S1,S2           comma-separated OAuth scopes (--scope S may repeat)
                           [default: ${DEFAULT_SCOPE}]
  --subject EMAIL          the user to act as (domain-wide delegation)
  --lifetime DURATION      print-access-token: how long the token must last, in seconds or
                           as 30m, 2h, up to ${MAX_LIFETIME_SECONDS}s (12h); past 1h only where the broker's
                           policy and Google allow it
  --audiences AUD          the ID token's or JWT's audience (alias: --audience)
  --include-email          accepted for gcloud's sake: the broker's ID tokens always carry email
  --min-lifetime SECONDS   the token served has at least this much life left (0-${MAX_MIN_LIFETIME_SECONDS})
  --broker-audience AUD    the audience of the caller's own ID token [$BROKER_AUDIENCE, else --url]
  --format FORMAT          text (the bare token, the default), json (alias: --json), or
                           value(FIELD,...): those fields, tab-separated. Fields:
                           ${FIELDS.join(', ')}
  --version                the CLI's version
  -h, --help               this text

credential-config flags (one source of the caller's token; gcloud's names where it has them):
  --credential-source-file PATH          a file that holds it (kept fresh by something else)
  --credential-source-url URL            any URL that answers with it ...
  --credential-source-headers K=V,K2=V2  ... with these request headers
  --credential-source-type text|json     how to read the file's or URL's answer [text]
  --credential-source-field-name NAME    with json: the field that holds the token
  --subject-token-type jwt|id_token      the token's type [id_token: a Google ID token;
                                         jwt for another OIDC issuer's token]
  --credential-source-metadata           the metadata server's identity endpoint for
                                         --broker-audience (Cloud Run, GKE, Compute Engine);
                                         host: $GCE_METADATA_HOST or metadata.google.internal
  --github-actions                       inside a GitHub Actions job (permissions: id-token:
                                         write): its ID token URL from
                                         $ACTIONS_ID_TOKEN_REQUEST_URL with &audience= the broker
                                         audience, $ACTIONS_ID_TOKEN_REQUEST_TOKEN as bearer, json
                                         field "value", type jwt. Needs --output-file
  --kubernetes-token PATH                a projected service-account token file (text, type jwt)
  --executable-command "CMD ARGS"        a program that prints it (Google's executable format;
                                         the libraries run it only with
                                         GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1)
  --executable-timeout-millis N          5000-120000 [libraries' default: 30000]
  --executable-output-file PATH          where the program caches its answer
  --sts-url URL            the sts function's own URL, instead of --url + /sts
  --output-file PATH       write the file there, 0600 [default: standard output]
  --subject EMAIL          as above; a target is required. The file names no scopes:
                           the calling code or its client library chooses them

Environment:
  BROKER_URL                      the broker's base URL, when --url is not given
  BROKER_AUDIENCE                 the audience of the caller's ID token (default: the URL)
  BROKER_ID_TOKEN                 the caller's ID token; when unset, it comes from Google's
                                  Application Default Credentials (metadata server on Google
                                  Cloud, else GOOGLE_APPLICATION_CREDENTIALS)
  GOOGLE_APPLICATION_CREDENTIALS  see above
  GCE_METADATA_HOST               see --credential-source-metadata
  ACTIONS_ID_TOKEN_REQUEST_URL, ACTIONS_ID_TOKEN_REQUEST_TOKEN   see --github-actions

Exit codes:
  0   success: the token (or the file) was written
  1   the broker refused (its error code and description are on stderr), or the
      caller ID token or the output file could not be had
  2   usage error: nothing was sent
  75  temporary failure (rate limited, Google or the broker unavailable): retry later

Examples:
  broker-token print-access-token reporting@acme.iam.gserviceaccount.com \\
      --url https://broker-xyz.a.run.app --scopes https://www.googleapis.com/auth/bigquery.readonly
  broker-token print-identity-token --url URL --tenant blue --audiences https://svc.example.com
  broker-token print-access-token SA --url URL --format 'value(token,expires_at)'
  broker-token credential-config --url URL --impersonate-service-account SA \\
      --credential-source-metadata --output-file broker.json
  broker-token credential-config --url URL --impersonate-service-account SA \\
      --github-actions --output-file "$RUNNER_TEMP/broker.json"
  GOOGLE_APPLICATION_CREDENTIALS=broker.json python3 my_job.py`;
