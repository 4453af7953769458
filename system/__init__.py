"""The queued RAG system: FastAPI enqueues on Valkey/RQ, workers run the shared RAG core."""
