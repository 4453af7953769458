"""The synchronous baseline: the same RAG pipeline answered inline by FastAPI, in three modes."""
