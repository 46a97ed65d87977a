/** `broker-token --help`: the commands, flags, environment variables and exit codes. */
import { MAX_MIN_LIFETIME_SECONDS } from '../../../wire/wire.js';

/** gcloud's default scope. */
export const DEFAULT_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

/** Exit codes, as `--help` lists them. */
export const EXIT = { ok: 0, refused: 1, usage: 2, tempfail: 75 } as const;

/** What `--help` prints. */
export const USAGE = `usage: broker-token [COMMAND] [FLAGS]

Commands:
  print-access-token    an OAuth 2.0 access token (the default command)
  print-identity-token  a Google-signed ID token for --audiences
  print-jwt             a self-signed JWT for --audiences, or for --scopes
  credential-config     write an external_account credential file, so that Google's
                        auth libraries (any language, gcloud) get tokens from the broker

Who the token is for (exactly one):
  --impersonate-service-account EMAIL   a service account (alias: --service-account)
  --tenant ID                           a tenant the broker's policy maps to one account

Flags:
  --url URL                the broker's base URL (paths /token, /jwt, /idtoken, /sts);
                           https:, or http: on loopback only [$BROKER_URL]
  --scopes S1,S2           comma-separated OAuth scopes (--scope S may repeat)
                           [default: ${DEFAULT_SCOPE}]
  --subject EMAIL          the user to act as (domain-wide delegation)
  --audiences AUD          the ID token's or JWT's audience (alias: --audience)
  --include-email          accepted for gcloud's sake: the broker's ID tokens always carry email
  --min-lifetime SECONDS   the token served has at least this much life left (0-${MAX_MIN_LIFETIME_SECONDS})
  --broker-audience AUD    the audience of the caller's own ID token [$BROKER_AUDIENCE, else --url]
  --format json            print the whole answer as JSON (alias: --json)
  -h, --help               this text

credential-config flags (one source of the caller's ID token):
  --credential-source-file PATH          a file that holds it (kept fresh by something else)
  --credential-source-metadata           the metadata server's identity endpoint for
                                         --broker-audience (Cloud Run, GKE, Compute Engine);
                                         host: $GCE_METADATA_HOST or metadata.google.internal
  --credential-source-url URL            any URL that answers with it ...
  --credential-source-headers K=V,K2=V2  ... with these request headers
  --executable-command "CMD ARGS"        a program that prints it (Google's executable format;
                                         the libraries run it only with
                                         GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1)
  --executable-timeout-millis N          5000-120000 [libraries' default: 30000]
  --executable-output-file PATH          where the program caches its answer
  --sts-url URL            the sts function's own URL, instead of --url + /sts
  --output-file PATH       write the file there [default: standard output]
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

Exit codes:
  0   success: the token (or the file) was written
  1   the broker refused (its error code and description are on stderr), or the
      caller ID token or the output file could not be had
  2   usage error: nothing was sent
  75  temporary failure (rate limited, Google or the broker unavailable): retry later

Examples:
  broker-token print-access-token --url https://broker-xyz.a.run.app \\
      --impersonate-service-account reporting@acme.iam.gserviceaccount.com \\
      --scopes https://www.googleapis.com/auth/bigquery.readonly
  broker-token print-identity-token --url URL --tenant blue --audiences https://svc.example.com
  broker-token credential-config --url URL --impersonate-service-account SA \\
      --credential-source-metadata --output-file broker.json
  GOOGLE_APPLICATION_CREDENTIALS=broker.json python3 my_job.py`;
