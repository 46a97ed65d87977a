variable "project_id" {
  type        = string
  description = "The Google Cloud project the broker runs in."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, e.g. europe-west1, europe-west10, northamerica-northeast2, me-central2."
  default     = "europe-west1"
  validation {
    # Google's region names: a continent, a direction-like word, and a number of one or more digits.
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region name such as europe-west1 or europe-west10."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name."
  default     = "token-broker"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name_prefix))
    error_message = "name_prefix: lower-case letters, digits and dashes, at most 21 characters."
  }
}

variable "source_dir" {
  type        = string
  description = "The packaged broker. null: the repository's .tmp/package (what `npm run package` writes), found from this module's directory whatever the working directory. A relative path is relative to the working directory."
  default     = null
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels (functions, secrets, the bucket, the image repository, alert policies), beside app, deployment and managed-by."
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "labels: keys start with a lower-case letter; keys and values are lower-case letters, digits, _ and -, at most 63 characters."
  }
}

variable "images_to_keep" {
  type        = number
  description = "Versions of each function image kept by the image repository's cleanup policy (the newest, the live one among them); older versions are deleted after 30 days."
  default     = 5
  validation {
    condition     = var.images_to_keep >= 1 && var.images_to_keep <= 100
    error_message = "images_to_keep must be from 1 to 100."
  }
}

variable "targets" {
  type        = list(string)
  description = "Function targets to deploy, one Cloud Function each: token, jwt, idtoken, admin, sts; or broker (all paths in one function), alone or beside sts."
  default     = ["token", "jwt", "idtoken", "admin"]
  validation {
    condition     = length(var.targets) > 0 && alltrue([for t in var.targets : contains(["token", "jwt", "idtoken", "admin", "sts", "broker"], t)])
    error_message = "targets must be a non-empty subset of token, jwt, idtoken, admin, sts, broker."
  }
  validation {
    condition     = length(distinct(var.targets)) == length(var.targets)
    error_message = "targets must not repeat a target."
  }
  validation {
    # Purge drops tokens from the memory of the instance it runs on and from the shared cache. A separate
    # admin function shares no memory with the token functions: without the shared cache its purge would
    # reach nothing that serves tokens.
    condition     = !contains(var.targets, "admin") || var.enable_shared_cache
    error_message = "The admin target as its own function needs enable_shared_cache = true: otherwise a purge cannot reach the other functions' caches. Deploy broker alone (its /admin/purge) or turn the shared cache on."
  }
}

variable "ingress" {
  type        = string
  description = "Who can reach the token, jwt, idtoken, admin and broker functions on the network. ALLOW_INTERNAL_ONLY needs callers to send their egress through a VPC in this project."
  default     = "ALLOW_INTERNAL_ONLY"
  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress)
    error_message = "ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "sts_ingress" {
  type        = string
  description = "Ingress of the sts function (RFC 8693 token exchange for Google's client libraries)."
  default     = "ALLOW_INTERNAL_ONLY"
  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.sts_ingress)
    error_message = "sts_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "sts_invoker" {
  type        = string
  description = "Who passes Cloud Run's invoker check on the sts function. \"callers\" (the default): roles/run.invoker for var.callers only, which works where domain-restricted sharing (iam.allowedPolicyMemberDomains, on by default in organisations created since May 2024) forbids allUsers, but serves only callers that add X-Serverless-Authorization: Google's client libraries send no such header. \"allUsers\": anyone who reaches the function passes Cloud Run's check, so Google's libraries can call it, and the broker's verification of the subject_token is the gate; it needs an exception to domain-restricted sharing where that is enforced. README, Token exchange."
  default     = "callers"
  validation {
    condition     = contains(["allUsers", "callers"], var.sts_invoker)
    error_message = "sts_invoker must be allUsers or callers."
  }
  validation {
    # A public invoker reachable from the internet leaves only the in-app check between the internet and the broker.
    condition     = var.sts_invoker != "allUsers" || var.sts_ingress != "ALLOW_ALL" || var.sts_allow_public_internet
    error_message = "sts_invoker = allUsers with sts_ingress = ALLOW_ALL exposes the sts function to the internet; set sts_allow_public_internet = true to say you mean it."
  }
}

variable "sts_allow_public_internet" {
  type        = bool
  description = "Allow sts_invoker = allUsers together with sts_ingress = ALLOW_ALL."
  default     = false
}

variable "max_instances" {
  type        = number
  description = "Most instances of each function."
  default     = 20
  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be from 1 to 1000."
  }
}

variable "min_instances" {
  type        = number
  description = "Instances kept warm (0 allows cold starts)."
  default     = 0
  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= 100
    error_message = "min_instances must be from 0 to 100."
  }
}

variable "timeout_seconds" {
  type        = number
  description = "Request timeout of each function; the broker's own deadline to Google is 10 s."
  default     = 30
  validation {
    condition     = var.timeout_seconds >= 15 && var.timeout_seconds <= 300
    error_message = "timeout_seconds must be from 15 to 300."
  }
}

variable "memory" {
  type        = string
  description = "Memory of each function instance."
  default     = "256Mi"
}

variable "refresh_skew_seconds" {
  type        = number
  description = "BROKER_REFRESH_SKEW_SECONDS: a cached token with less life left is re-minted."
  default     = 300
  validation {
    condition     = var.refresh_skew_seconds >= 0 && var.refresh_skew_seconds <= 3300
    error_message = "refresh_skew_seconds must be from 0 to 3300."
  }
}

variable "service_accounts" {
  type = list(object({
    email     = string
    secret_id = optional(string)
    keyless   = optional(bool, false)
    delegates = optional(list(string), [])
    tenant    = optional(string)
    # The shared-tenant pattern: one account serves many tenants (["*"]), each token cut down by the grant's
    # accessBoundary (a Credential Access Boundary). README, Large policies.
    tenants = optional(list(string))
  }))
  description = "Service accounts the broker serves. Keyed: secret_id names the Secret Manager secret that holds its key (versions are added out of band). Keyless: keyless = true, minted through the IAM Credentials API with the broker's own identity, optionally through a chain of delegates."
  validation {
    condition     = length(var.service_accounts) > 0 && alltrue([for sa in var.service_accounts : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]+$", sa.email))])
    error_message = "service_accounts needs at least one entry, each with a valid email."
  }
  validation {
    condition     = alltrue([for sa in var.service_accounts : (sa.secret_id != null) != sa.keyless])
    error_message = "Each service account needs exactly one of secret_id (a key in Secret Manager) or keyless = true."
  }
  validation {
    condition     = alltrue([for sa in var.service_accounts : sa.secret_id == null || can(regex("^[A-Za-z0-9_-]{1,255}$", sa.secret_id))])
    error_message = "secret_id: letters, digits, _ and -."
  }
  validation {
    condition     = alltrue([for sa in var.service_accounts : sa.keyless || length(sa.delegates) == 0])
    error_message = "delegates are only for keyless accounts."
  }
  validation {
    # The grants are made on user-managed accounts, whose project is in the email (NAME@PROJECT.iam.gserviceaccount.com).
    condition = alltrue(flatten([for sa in var.service_accounts : [
      for e in concat(sa.keyless ? [sa.email] : [], sa.delegates) : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\\.iam\\.gserviceaccount\\.com$", e))
    ]]))
    error_message = "Keyless accounts and their delegates must be user-managed service accounts, NAME@PROJECT.iam.gserviceaccount.com."
  }
  validation {
    condition     = length(distinct([for sa in var.service_accounts : sa.email])) == length(var.service_accounts)
    error_message = "Each service account may be listed once."
  }
  validation {
    condition     = length(distinct([for sa in var.service_accounts : sa.secret_id if sa.secret_id != null])) == length([for sa in var.service_accounts : sa if sa.secret_id != null])
    error_message = "Each secret_id may hold one account's key."
  }
}

variable "policy" {
  type = object({
    # Any JSON the broker takes (docs/contract.md, Grants): `any`, not list(any), so that grants may differ in
    # their fields and hold objects such as accessBoundary (list(any) must unify every grant to one type).
    grants     = any
    admins     = optional(list(string), [])
    rateLimit  = optional(object({ requests = number, windowSeconds = number }))
    rateLimits = optional(map(object({ requests = number, windowSeconds = number })))
    # Issuers of non-Google OIDC tokens the broker accepts from callers (GitHub Actions, Kubernetes): see
    # external_caller_targets.
    issuers = optional(list(object({
      name      = string
      issuer    = string
      audiences = list(string)
      claims    = optional(map(string))
      jwksUri   = optional(string)
    })))
  })
  description = "The broker policy without serviceAccounts (built from var.service_accounts); see docs/contract.md, Policy."
  validation {
    condition     = can([for g in var.policy.grants : g.callers])
    error_message = "policy.grants must be a list of grants, each with callers."
  }
}

variable "policy_delivery" {
  type        = string
  description = "How the functions get the policy. \"env\" (default): the JSON in BROKER_POLICY, read at start; a change deploys new revisions; it must fit, with the other variables, in the 32 KiB Cloud Run allows a function's environment (plan says when it does not). \"secret\": the JSON in a Secret Manager secret (up to 64 KiB), mounted at latest as the file BROKER_POLICY_FILE names; the broker reads it again every minute (BROKER_POLICY_REFRESH_SECONDS), so a change reaches running functions without a deploy. README, Large policies."
  default     = "env"
  validation {
    condition     = contains(["env", "secret"], var.policy_delivery)
    error_message = "policy_delivery must be env or secret."
  }
}

variable "callers" {
  type        = list(string)
  description = "Service-account emails allowed to invoke the token, jwt, idtoken and broker functions (roles/run.invoker). The policy still decides what each may get."
  default     = []
  validation {
    condition     = alltrue([for c in var.callers : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]+$", c))])
    error_message = "callers must be emails."
  }
}

variable "admins" {
  type        = list(string)
  description = "Service-account emails allowed to invoke the admin function (and broker's /admin/purge)."
  default     = []
  validation {
    condition     = alltrue([for c in var.admins : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]+$", c))])
    error_message = "admins must be emails."
  }
}

variable "enable_shared_cache" {
  type        = bool
  description = "Use an Upstash Redis database as the shared cache (L2). Without it each instance caches alone."
  default     = true
  validation {
    condition     = !var.enable_shared_cache || var.create_upstash_database || var.upstash_redis_rest_url != ""
    error_message = "enable_shared_cache needs a database: create_upstash_database = true, or upstash_redis_rest_url and upstash_redis_rest_token (TF_VAR_upstash_redis_rest_token) of an existing one."
  }
}

variable "create_upstash_database" {
  type        = bool
  description = "Create the Upstash database with the upstash provider; otherwise pass an existing one's REST URL and token."
  default     = false
  validation {
    condition     = !var.create_upstash_database || (var.enable_shared_cache && var.upstash_email != "")
    error_message = "create_upstash_database needs enable_shared_cache, upstash_email and upstash_api_key (TF_VAR_upstash_api_key)."
  }
}

variable "upstash_email" {
  type        = string
  description = "Upstash account email, only with create_upstash_database."
  default     = ""
}

variable "upstash_api_key" {
  type        = string
  description = "Upstash management API key, only with create_upstash_database. Ephemeral: it configures the provider and is never saved in plan or state."
  sensitive   = true
  ephemeral   = true
  default     = null
  # The check that reads this value sits here, in the ephemeral variable's own validation, not in another's.
  validation {
    condition     = var.upstash_api_key != null || !var.create_upstash_database
    error_message = "create_upstash_database needs upstash_api_key (TF_VAR_upstash_api_key)."
  }
}

variable "upstash_region" {
  type        = string
  description = "Primary region of a created (global) Upstash database: one Upstash accepts, close to var.region."
  default     = "eu-west-1"
  validation {
    # upstash_redis_database.primary_region, as the upstash provider documents it (2.x, upstash/redis/database/resource.go).
    condition     = contains(["us-east-1", "us-west-1", "us-west-2", "eu-central-1", "eu-west-1", "sa-east-1", "ap-southeast-1", "ap-southeast-2"], var.upstash_region)
    error_message = "upstash_region must be one of us-east-1, us-west-1, us-west-2, eu-central-1, eu-west-1, sa-east-1, ap-southeast-1, ap-southeast-2."
  }
}

variable "upstash_redis_rest_url" {
  type        = string
  description = "REST URL of an existing Upstash database (https://...upstash.io)."
  default     = ""
  validation {
    condition     = var.upstash_redis_rest_url == "" || startswith(var.upstash_redis_rest_url, "https://")
    error_message = "upstash_redis_rest_url must be https."
  }
}

variable "upstash_redis_rest_token" {
  type        = string
  description = "REST token of an existing Upstash database. Ephemeral: written to Secret Manager through a write-only argument, never saved in plan or state. Pass it when creating the secret version or rotating it (bump upstash_token_version)."
  sensitive   = true
  ephemeral   = true
  default     = null
  validation {
    condition     = var.upstash_redis_rest_token != null || !var.enable_shared_cache || var.create_upstash_database
    error_message = "enable_shared_cache with an existing database needs upstash_redis_rest_token (TF_VAR_upstash_redis_rest_token)."
  }
}

variable "upstash_token_version" {
  type        = number
  description = "Bump to write a new Upstash REST token version (write-only arguments are only sent when this changes)."
  default     = 1
}

variable "cache_key_version" {
  type        = number
  description = "Bump to generate and store a new BROKER_CACHE_KEY (every cached token then misses once)."
  default     = 1
}

variable "manage_key_versions_in_terraform" {
  type        = bool
  description = "Opt-in: add service-account key versions from var.service_account_key_files, through a write-only argument (never saved in state). The default is to add them with gcloud."
  default     = false
}

variable "service_account_key_files" {
  type        = map(string)
  description = "secret_id => path of a key file, used only with manage_key_versions_in_terraform."
  sensitive   = true
  default     = {}
  validation {
    # Each key names the secret of a keyed account: an unknown one used to fail the plan with an index error.
    condition     = alltrue([for id in keys(var.service_account_key_files) : contains([for sa in var.service_accounts : sa.secret_id if sa.secret_id != null], id)])
    error_message = "service_account_key_files: every key must be the secret_id of a keyed account in service_accounts."
  }
  validation {
    condition     = alltrue([for file_path in values(var.service_account_key_files) : fileexists(file_path)])
    error_message = "service_account_key_files: a key file does not exist (paths are relative to the working directory)."
  }
}

variable "key_files_version" {
  type        = number
  description = "Bump to write the key files again (with manage_key_versions_in_terraform)."
  default     = 1
}

variable "delegated_job" {
  type = object({
    schedule        = string
    time_zone       = optional(string, "Etc/UTC")
    service_account = string
    subject         = string
    scopes          = list(string)
    # The job reaches the broker's internal ingress through this Serverless VPC Access connector
    # (projects/P/locations/R/connectors/NAME); null: the module creates a network, subnet and connector.
    vpc_connector        = optional(string)
    connector_cidr_range = optional(string, "10.8.0.0/28")
  })
  description = "An optional scheduled job that asks the broker for a domain-wide-delegated token and calls a Google API with it."
  default     = null
  validation {
    condition     = var.delegated_job == null || contains(var.targets, "token") || contains(var.targets, "broker")
    error_message = "delegated_job calls the token endpoint: targets must include token or broker."
  }
}

variable "alert_notification_channels" {
  type        = list(string)
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) of the alert policies."
  default     = []
}

variable "alert_emails" {
  type        = list(string)
  description = "Email addresses the alert policies notify (an email notification channel is created for each). With neither this nor alert_notification_channels the alerts show in the console only, and plan warns."
  default     = []
  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]+$", e))])
    error_message = "alert_emails must be email addresses."
  }
}

variable "denials_per_minute_alert" {
  type        = number
  description = "Alert when denied requests stay above this many per minute for 5 minutes (a misconfigured caller, or someone probing)."
  default     = 30
}

variable "iam_propagation_wait" {
  type        = string
  description = "How long to wait after creating service agents and granting the build and runtime accounts their roles, before the first build or deploy that relies on them (IAM changes typically take 2 minutes to propagate, sometimes 7 or more). Waited again only when one of those grants changes."
  default     = "120s"
  validation {
    condition     = can(regex("^[0-9]+[sm]$", var.iam_propagation_wait))
    error_message = "iam_propagation_wait must be a duration such as 120s or 5m."
  }
}

variable "metric_propagation_wait" {
  type        = string
  description = "How long to wait after creating the log-based metrics before creating the alert policies on them: the Monitoring API answers \"Cannot find metric(s)\" for up to 10 minutes after a metric is created. It runs while the functions build, and again only when a metric is replaced."
  default     = "600s"
  validation {
    condition     = can(regex("^[0-9]+[sm]$", var.metric_propagation_wait))
    error_message = "metric_propagation_wait must be a duration such as 600s or 10m."
  }
}

variable "secret_locations" {
  type        = list(string)
  description = "Where Secret Manager keeps the module's secrets. null: automatic replication (Google chooses the locations; an organisation policy gcp.resourceLocations must allow `global`). A list of regions, e.g. [\"europe-west1\"]: user-managed replication in exactly those, for projects whose resource-location policy allows only the region. Replication cannot change in place: changing this replaces the secrets, and key versions added out of band must be added again."
  default     = null
  validation {
    condition     = var.secret_locations == null || try(length(var.secret_locations) > 0 && alltrue([for l in var.secret_locations : can(regex("^[a-z]+-[a-z]+[0-9]+$", l))]), false)
    error_message = "secret_locations: null (automatic replication) or a non-empty list of regions such as europe-west1."
  }
}

variable "secret_version_destroy_ttl" {
  type        = string
  description = "Secret Manager's delayed destruction on the module's secrets: a destroyed version (an old one after a rotation, or one destroyed by hand) is disabled at once and destroyed after this long, and can be re-enabled until then. null: destroyed at once."
  default     = "86400s"
  validation {
    condition     = var.secret_version_destroy_ttl == null || can(regex("^[0-9]+s$", var.secret_version_destroy_ttl))
    error_message = "secret_version_destroy_ttl must be null or a number of seconds such as 86400s."
  }
}

variable "smoke_test" {
  type = object({
    # A served account (one of service_accounts) to ask a token for. A keyless one needs nothing more; a keyed
    # one needs its key in Secret Manager first (README, step 5).
    service_account = string
    scopes          = optional(list(string), ["https://www.googleapis.com/auth/userinfo.email"])
    # Any image with Node.js 22 or later on its PATH as `node`.
    image = optional(string, "docker.io/library/node:22-alpine")
    # An existing subnet (with Private Google Access) for Direct VPC egress; null: the module makes a network and
    # a subnet of subnet_cidr_range.
    subnetwork        = optional(string)
    subnet_cidr_range = optional(string, "10.8.16.0/26")
  })
  description = "Optional: a Cloud Run job inside the VPC that asks the token endpoint for a token for service_account and logs the token's tokeninfo (README, step 6). It adds one grant to the policy, for its own account only, and costs nothing idle."
  default     = null
  validation {
    condition     = var.smoke_test == null || try(contains([for sa in var.service_accounts : lower(sa.email)], lower(var.smoke_test.service_account)), false)
    error_message = "smoke_test.service_account must be one of the emails in service_accounts."
  }
  validation {
    condition     = var.smoke_test == null || contains(var.targets, "token") || contains(var.targets, "broker")
    error_message = "smoke_test calls the token endpoint: targets must include token or broker."
  }
}

variable "external_caller_targets" {
  type        = set(string)
  description = "Targets that take callers holding a non-Google OIDC token (GitHub Actions, Kubernetes), which the broker verifies against policy.issuers. Cloud Run's invoker check cannot pass such a token, so each of these functions gets allUsers as invoker and external_caller_ingress as ingress: the broker's own verification is then the only gate. README, External callers."
  default     = []
  validation {
    condition     = alltrue([for t in var.external_caller_targets : contains(var.targets, t)])
    error_message = "external_caller_targets must be among the deployed targets (var.targets)."
  }
  validation {
    # admin answers only the admins, who are Google service accounts that can pass the invoker check.
    condition     = !contains(var.external_caller_targets, "admin")
    error_message = "external_caller_targets cannot include admin: purge is for the admins, whose Google identity passes Cloud Run's invoker check."
  }
  validation {
    condition     = length(var.external_caller_targets) == 0 || try(length(var.policy.issuers) > 0, false)
    error_message = "external_caller_targets opens functions to callers of other identity providers: the policy needs at least one entry in issuers for the broker to verify them."
  }
}

variable "external_caller_ingress" {
  type        = string
  description = "Ingress of the external_caller_targets functions. ALLOW_ALL (default): callers on the internet, such as GitHub-hosted runners. ALLOW_INTERNAL_ONLY: callers inside this project's VPC, such as a GKE cluster. ALLOW_INTERNAL_AND_GCLB: behind an external Application Load Balancer (Cloud Armor)."
  default     = "ALLOW_ALL"
  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.external_caller_ingress)
    error_message = "external_caller_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}
