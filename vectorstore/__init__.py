"""The one place that speaks Qdrant: a small store interface and its backends."""
