"""Celery workers: bulk ingestion jobs (validate, embed, upsert)."""
