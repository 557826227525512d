"""Structured logs carry the request id; finished jobs feed the ingestion metrics."""

from __future__ import annotations

import json
import logging

from cellsearch.platform import ops
from cellsearch.platform.jobs import Job, JobState


def test_json_logs_carry_the_request_id(capsys):
    ops.configure_logging("INFO", "json")
    token = ops.REQUEST_ID.set("req-123")
    try:
        logging.getLogger("cellsearch.test").info("hello %s", "there")
    finally:
        ops.REQUEST_ID.reset(token)
        logging.getLogger().handlers.clear()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["request_id"] == "req-123"
    assert line["msg"] == "hello there"
    assert line["level"] == "INFO"


def test_a_finished_job_feeds_the_rate_and_the_counters():
    before = ops.REGISTRY.get_sample_value("cellsearch_ingested_cells_total") or 0.0
    job = Job(
        job_id="j",
        dataset_id="d",
        study_id="s",
        path="/p",
        state=JobState.SUCCEEDED,
        cells_total=1000,
        stage_seconds={"embed": 0.5, "upsert": 0.5},
    )
    ops.record_job(job)
    assert ops.REGISTRY.get_sample_value("cellsearch_ingested_cells_total") == before + 1000
    assert ops.REGISTRY.get_sample_value("cellsearch_ingest_cells_per_second") == 1000.0
    done = ops.REGISTRY.get_sample_value("cellsearch_jobs_finished_total", {"state": "SUCCEEDED"})
    assert done >= 1
