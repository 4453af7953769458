"""The embedded stack: starting, scaling and stopping every part on one machine (`ragload up`), and the
process plumbing (services.py) and container healthchecks (healthcheck.py) that go with it."""
