# Optional: the Upstash Redis database of the shared cache, created with the upstash provider
# (create_upstash_database = true; versions.tf explains the provider block when it is false).
resource "upstash_redis_database" "cache" {
  count          = var.enable_shared_cache && var.create_upstash_database ? 1 : 0
  database_name  = "${var.name_prefix}-cache"
  region         = "global"
  primary_region = var.upstash_region
  tls            = true
  eviction       = true
}
