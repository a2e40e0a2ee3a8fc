"""Shared building blocks: one implementation each (attention, embeddings, similarity, ...)."""
