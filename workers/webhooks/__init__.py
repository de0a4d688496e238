"""Webhooks from the log (docs/events.md, "Webhooks"): endpoints registered through the API
receive the events that match their filters, signed, in order per endpoint, at least once.

The rooms: `signing` (Standard Webhooks signatures and their check), `ssrf` (which URLs and
addresses may be called), `policy` (filters, backoff), `endpoints` (what a registration may
say, the API's shapes), `store` (the Postgres tables, schema opsml_webhooks), `sender` (one
HTTP attempt), `fanout` (the log into deliveries, with the position), `lanes` (one endpoint's
deliveries in order, retried, dead-lettered), `service` (the process: `opsml webhooks run`)."""
