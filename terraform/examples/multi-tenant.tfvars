project_id = "platform-prod"
region     = "us-central1"
targets    = ["broker"]
ingress    = "ALLOW_INTERNAL_AND_GCLB"

service_accounts = [
  { email = "blue@tenant-blue.iam.gserviceaccount.com", secret_id = "tenant-blue-key", tenant = "blue" },
  { email = "green@tenant-green.iam.gserviceaccount.com", secret_id = "tenant-green-key", tenant = "green" },
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

# Create the Upstash database too; pass TF_VAR_upstash_api_key.
create_upstash_database = true
upstash_email           = "ops@platform.example"
upstash_region          = "us-central1"
