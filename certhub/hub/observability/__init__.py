"""What an operator watches: JSON logs, Prometheus metrics and the per-call interceptor.

``logs`` formats every log line as one JSON object and scrubs holder IDs from it;
``metrics`` owns the Prometheus metrics (single- and multi-process) and the sampler that
reads gauges from the database and counters from the cache; ``interceptor`` times, counts and
logs every gRPC call and gives it a request id. Health lives in ``certhub.hub.health``.
"""
