"""The RAG core shared by both architectures: LLM client, vector store, prompt, pipeline."""
