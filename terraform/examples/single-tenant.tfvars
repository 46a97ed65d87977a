# One function per target, internal ingress, an existing Upstash database, one keyed and one keyless account,
# the sts target for Google's client libraries, and a scheduled delegated job through the keyless account.
# Needs no Upstash account credentials; pass the database's REST token with TF_VAR_upstash_redis_rest_token.
project_id = "acme-prod"
region     = "europe-west1"
targets    = ["token", "jwt", "idtoken", "admin", "sts"]

service_accounts = [
  { email = "reporting@acme-prod.iam.gserviceaccount.com", secret_id = "reporting-key" },
  { email = "calendar-sync@acme-prod.iam.gserviceaccount.com", keyless = true },
]

policy = {
  grants = [
    {
      callers         = ["billing@acme-prod.iam.gserviceaccount.com"]
      serviceAccounts = ["reporting@acme-prod.iam.gserviceaccount.com"]
      scopes          = ["https://www.googleapis.com/auth/bigquery.readonly"]
    },
    {
      callers         = ["token-broker-job@acme-prod.iam.gserviceaccount.com"]
      serviceAccounts = ["calendar-sync@acme-prod.iam.gserviceaccount.com"]
      scopes          = ["https://www.googleapis.com/auth/calendar.readonly"]
      subjects        = ["*@acme.com"]
    },
  ]
  admins    = ["ops@acme-prod.iam.gserviceaccount.com"]
  rateLimit = { requests = 600, windowSeconds = 60 }
}

callers = ["billing@acme-prod.iam.gserviceaccount.com"]
admins  = ["ops@acme-prod.iam.gserviceaccount.com"]

# Who the alert policies notify (an email channel each); without any, plan warns that alerts reach nobody.
alert_emails = ["ops@acme.com"]

# Existing Upstash database; pass the token with TF_VAR_upstash_redis_rest_token.
upstash_redis_rest_url = "https://eu1-example-12345.upstash.io"

delegated_job = {
  schedule        = "0 6 * * *"
  service_account = "calendar-sync@acme-prod.iam.gserviceaccount.com"
  subject         = "reports@acme.com"
  scopes          = ["https://www.googleapis.com/auth/calendar.readonly"]
}

# Step 6 of terraform/README.md: a Cloud Run job inside the VPC that asks for a token for this (keyless)
# account and logs its tokeninfo. Run it with `terraform output smoke_test`.
smoke_test = { service_account = "calendar-sync@acme-prod.iam.gserviceaccount.com" }
