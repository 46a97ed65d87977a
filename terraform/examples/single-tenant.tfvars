project_id = "acme-prod"
region     = "europe-west1"

service_accounts = [
  { email = "reporting@acme-prod.iam.gserviceaccount.com", secret_id = "reporting-key" },
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
      serviceAccounts = ["reporting@acme-prod.iam.gserviceaccount.com"]
      scopes          = ["https://www.googleapis.com/auth/calendar.readonly"]
      subjects        = ["*@acme.com"]
    },
  ]
  admins    = ["ops@acme-prod.iam.gserviceaccount.com"]
  rateLimit = { requests = 600, windowSeconds = 60 }
}

callers = ["billing@acme-prod.iam.gserviceaccount.com"]
admins  = ["ops@acme-prod.iam.gserviceaccount.com"]

# Existing Upstash database; pass the token with TF_VAR_upstash_redis_rest_token.
upstash_redis_rest_url = "https://eu1-example-12345.upstash.io"

delegated_job = {
  schedule        = "0 6 * * *"
  service_account = "reporting@acme-prod.iam.gserviceaccount.com"
  subject         = "reports@acme.com"
  scopes          = ["https://www.googleapis.com/auth/calendar.readonly"]
}
