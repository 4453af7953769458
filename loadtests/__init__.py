"""Locust scenarios, the embedded-stack supervisor, the sweep runner and the `ragload` CLI."""
