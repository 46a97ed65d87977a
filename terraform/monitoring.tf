# Operations: log-based metrics from the broker's one structured line per request, alert policies on them, and a
# dashboard. Cloud Run's logging agent turns each JSON line the broker prints into a log entry of the
# run.googleapis.com/stdout log: `severity` and `httpRequest` become the entry's own fields, the rest (with
# `audit`) stays in jsonPayload (docs/operations.md). test/integration/log-metrics.test.ts evaluates these filters
# and extractors on lines a real broker printed.

locals {
  # The broker's request lines: every one has a requestId; start-up and other lines have none.
  request_lines = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=~\"^${local.prefix}-(token|jwt|idtoken|admin|sts|broker)$\"",
    "logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\"",
    "jsonPayload.requestId:*",
  ])
  requests_metric = "logging.googleapis.com/user/${google_logging_metric.requests.name}"
  latency_metric  = "logging.googleapis.com/user/${google_logging_metric.mint_latency.name}"
}

resource "google_logging_metric" "requests" {
  project     = var.project_id
  name        = "${local.prefix}/requests"
  description = "Broker requests, by operation, policy decision, cache outcome, error code and status class."
  filter      = local.request_lines
  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Token broker requests"
    dynamic "labels" {
      for_each = ["function", "operation", "decision", "cache", "error", "upstream_error", "status_class"]
      content {
        key        = labels.value
        value_type = "STRING"
      }
    }
  }
  label_extractors = {
    function       = "EXTRACT(resource.labels.service_name)"
    operation      = "EXTRACT(jsonPayload.audit.operation)"
    decision       = "EXTRACT(jsonPayload.audit.decision)"
    cache          = "EXTRACT(jsonPayload.audit.cache)"
    error          = "EXTRACT(jsonPayload.audit.error)"
    upstream_error = "EXTRACT(jsonPayload.audit.upstreamError)"
    status_class   = "REGEXP_EXTRACT(httpRequest.status, \"^([1-5])[0-9][0-9]$\")"
  }
  depends_on = [google_project_service.apis]
}

# Mint latency: the latency of each request that was answered by minting (a cache miss), in milliseconds.
resource "google_logging_metric" "mint_latency" {
  project         = var.project_id
  name            = "${local.prefix}/mint_latency"
  description     = "Latency of requests answered by a fresh mint (cache miss), in ms."
  filter          = "${local.request_lines} AND jsonPayload.audit.cache=\"miss\""
  value_extractor = "EXTRACT(jsonPayload.audit.latencyMs)"
  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "Token broker mint latency"
    labels {
      key        = "operation"
      value_type = "STRING"
    }
  }
  label_extractors = {
    operation = "EXTRACT(jsonPayload.audit.operation)"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.4
      scale              = 1
    }
  }
  depends_on = [google_project_service.apis]
}

# The Monitoring API refuses an alert policy on a log-based metric for some time after the metric is created:
# "Cannot find metric(s) that match type ... If a metric was created recently, it could take up to 10 minutes
# to become available" (hashicorp/terraform-provider-google#11102, open; the provider does not retry it). The
# alert policies wait for this sleep, which starts when the metrics exist and restarts when one is replaced.
resource "time_sleep" "metrics_propagation" {
  create_duration = var.metric_propagation_wait
  triggers = {
    requests     = google_logging_metric.requests.id
    mint_latency = google_logging_metric.mint_latency.id
  }
}

resource "google_monitoring_alert_policy" "upstream_unavailable" {
  project      = var.project_id
  display_name = "${local.prefix}: Google unreachable for 10 minutes (upstream_unavailable)"
  combiner     = "OR"
  conditions {
    display_name = "upstream_unavailable answers in every minute for 10 minutes"
    condition_threshold {
      filter          = "metric.type=\"${local.requests_metric}\" AND resource.type=\"cloud_run_revision\" AND metric.label.error=\"upstream_unavailable\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "600s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }
  notification_channels = local.alert_channels
  user_labels           = local.labels
  depends_on            = [time_sleep.metrics_propagation]
  documentation {
    mime_type = "text/markdown"
    content   = "The broker could not reach Google's token endpoint, IAM Credentials, the metadata server or Secret Manager after retries, with no still-valid cached token to serve. See docs/operations.md."
  }
}

resource "google_monitoring_alert_policy" "server_errors" {
  project      = var.project_id
  display_name = "${local.prefix}: 5xx answers"
  combiner     = "OR"
  conditions {
    display_name = "any 5xx answer"
    condition_threshold {
      filter          = "metric.type=\"${local.requests_metric}\" AND resource.type=\"cloud_run_revision\" AND metric.label.status_class=\"5\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.error"]
      }
      trigger {
        count = 1
      }
    }
  }
  notification_channels = local.alert_channels
  user_labels           = local.labels
  depends_on            = [time_sleep.metrics_propagation]
  documentation {
    mime_type = "text/markdown"
    content   = "The broker answered 5xx: upstream_rejected (502, a Google refusal: see the audit line's upstreamError), upstream_unavailable (503) or an internal error (500). See docs/operations.md."
  }
}

resource "google_monitoring_alert_policy" "denial_spike" {
  project      = var.project_id
  display_name = "${local.prefix}: spike in denied requests"
  combiner     = "OR"
  conditions {
    display_name = "denials above ${var.denials_per_minute_alert}/min for 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"${local.requests_metric}\" AND resource.type=\"cloud_run_revision\" AND metric.label.decision=\"deny\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.denials_per_minute_alert / 60
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }
  notification_channels = local.alert_channels
  user_labels           = local.labels
  depends_on            = [time_sleep.metrics_propagation]
  documentation {
    mime_type = "text/markdown"
    content   = "Many requests are denied by the policy: a caller lost a grant, or someone is probing for service accounts. The audit lines' caller and reason say which. See docs/operations.md."
  }
}

locals {
  per_minute = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM" }
  dashboard_tiles = [
    {
      title = "Cache hit ratio (token, jwt, idtoken)"
      dataSets = [{
        plotType = "LINE"
        timeSeriesQuery = {
          timeSeriesFilterRatio = {
            numerator   = { filter = "metric.type=\"${local.requests_metric}\" AND metric.label.cache=\"hit\"", aggregation = local.per_minute }
            denominator = { filter = "metric.type=\"${local.requests_metric}\" AND metric.label.cache=one_of(\"hit\",\"miss\",\"stale\")", aggregation = local.per_minute }
          }
        }
      }]
    },
    {
      title = "Mints per minute"
      dataSets = [{
        plotType        = "STACKED_BAR"
        timeSeriesQuery = { timeSeriesFilter = { filter = "metric.type=\"${local.requests_metric}\" AND metric.label.cache=\"miss\"", aggregation = merge(local.per_minute, { groupByFields = ["metric.label.operation"] }) } }
      }]
    },
    {
      title = "Denials per minute"
      dataSets = [{
        plotType        = "STACKED_BAR"
        timeSeriesQuery = { timeSeriesFilter = { filter = "metric.type=\"${local.requests_metric}\" AND metric.label.decision=\"deny\"", aggregation = merge(local.per_minute, { groupByFields = ["metric.label.operation"] }) } }
      }]
    },
    {
      title = "Mint latency p99 (ms)"
      dataSets = [{
        plotType        = "LINE"
        timeSeriesQuery = { timeSeriesFilter = { filter = "metric.type=\"${local.latency_metric}\"", aggregation = merge(local.per_minute, { crossSeriesReducer = "REDUCE_PERCENTILE_99" }) } }
      }]
    },
  ]
}

locals {
  dashboard_json = jsonencode({
    displayName = "Token broker (${local.prefix})"
    mosaicLayout = {
      columns = 12
      tiles = [for i, t in local.dashboard_tiles : {
        xPos   = (i % 2) * 6
        yPos   = floor(i / 2) * 4
        width  = 6
        height = 4
        widget = { title = t.title, xyChart = { dataSets = t.dataSets } }
      }]
    }
  })
}

# The Monitoring API returns a dashboard with fields it filled in, which the provider reports as a change on
# every plan (a permadiff: hashicorp/terraform-provider-google#16173, open). The dashboard ignores changes to
# its JSON, and is replaced instead when the JSON this module writes changes (terraform_data.dashboard).
resource "terraform_data" "dashboard" {
  input = sha256(local.dashboard_json)
}

resource "google_monitoring_dashboard" "broker" {
  project        = var.project_id
  dashboard_json = local.dashboard_json
  lifecycle {
    ignore_changes       = [dashboard_json]
    replace_triggered_by = [terraform_data.dashboard]
  }
  depends_on = [google_project_service.apis]
}

# Alert policies with no notification channel fire in the console only.
resource "google_monitoring_notification_channel" "email" {
  for_each     = toset(var.alert_emails)
  project      = var.project_id
  display_name = "${local.prefix} alerts: ${each.value}"
  type         = "email"
  labels       = { email_address = each.value }
  user_labels  = local.labels
  depends_on   = [google_project_service.apis]
}

locals {
  alert_channels = concat(var.alert_notification_channels, [for c in google_monitoring_notification_channel.email : c.id])
}

check "alerts_reach_someone" {
  assert {
    condition     = length(var.alert_notification_channels) + length(var.alert_emails) > 0
    error_message = "The alert policies have no notification channel, so they only show in the console: set alert_emails (or alert_notification_channels)."
  }
}
