"""The harness: the `ragload` CLI (cli.py) and one folder per concept: locust/ (the Locust scenarios), stack/
(the embedded stack, `ragload up`), sweep/ (`ragload bench`), profiles/ (their TOML files), faults/ (the fault
runs) and bench/ (`ragload bench-mock`, `ragload bench-queue`)."""
