# One broker function (all paths) beside sts, tenants (one keyed, one keyless through a delegate), and an
# Upstash database created for you: pass TF_VAR_upstash_api_key.
project_id = "platform-prod"
region     = "us-central1"
targets    = ["broker", "sts"]
ingress    = "ALLOW_INTERNAL_AND_GCLB"

service_accounts = [
  { email = "blue-tenant@tenant-blue.iam.gserviceaccount.com", secret_id = "tenant-blue-key", tenant = "blue" },
  {
    email     = "green-tenant@tenant-green.iam.gserviceaccount.com"
    keyless   = true
    delegates = ["broker-hop@platform-prod.iam.gserviceaccount.com"]
    tenant    = "green"
  },
]

policy = {
  grants = [
    {
      callers    = ["platform@platform-prod.iam.gserviceaccount.com"]
      tenants    = ["*"]
      scopes     = ["https://www.googleapis.com/auth/drive.file"]
      operations = ["token", "jwt", "idtoken"]
      audiences  = ["https://drive.googleapis.com/"]
    },
  ]
  admins = ["ops@platform-prod.iam.gserviceaccount.com"]
}

callers = ["platform@platform-prod.iam.gserviceaccount.com"]
admins  = ["ops@platform-prod.iam.gserviceaccount.com"]

alert_emails = ["ops@platform.example"]

create_upstash_database = true
upstash_email           = "ops@platform.example"
upstash_region          = "us-east-1" # Upstash's global databases run on AWS regions; us-east-1 is closest to us-central1

# Step 6 of terraform/README.md: a Cloud Run job inside the VPC that asks /token on the broker function for a
# token for this (keyless, delegated) account and logs its tokeninfo.
smoke_test = { service_account = "green-tenant@tenant-green.iam.gserviceaccount.com" }
