"""Operating the bot: Prometheus metrics, the health check and their HTTP endpoints."""
