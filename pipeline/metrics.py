"""Prometheus metrics shared by the API and the workers."""

from prometheus_client import Counter, Gauge, Histogram

VERDICTS = Counter("genguard_verdicts_total", "Verdicts by action and source", ["action", "source"])
CHECK_SECONDS = Histogram(
    "genguard_check_seconds", "Prompt check latency (evaluation only)", ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0),
)  # fmt: skip
DEAD_LETTERS = Counter("genguard_dead_letters_total", "Messages sent to the DLQ", ["topic"])
OVERLOADED = Counter("genguard_api_overloaded_total", "Requests shed with 503 because too many were in flight")
PROMPT_BATCH = Histogram("genguard_prompt_batch_size", "Prompts checked together in one model call",
                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

# The review figures live in Redis (every API process shows the same); /metrics reads them when scraped.
REVIEW_QUEUE = Gauge("genguard_review_queue_depth", "Jobs held for review", ["tenant"])
APPEALS_OPEN = Gauge("genguard_review_appeals_open", "Appeals waiting for a senior reviewer", ["tenant"])
OVERTURN_RATE = Gauge("genguard_review_overturn_ratio", "Share of decided appeals overturned, last 7 days", ["tenant"])
QUEUE_MEDIAN = Gauge("genguard_review_queue_median_seconds", "Median time in the review queue (last 1000)", ["tenant"])
DECISIONS_TODAY = Gauge("genguard_review_decisions_today", "Decisions today by who and action",
                        ["tenant", "who", "action"])
