"""An OpenAI-compatible mock server with known latency and faults."""
