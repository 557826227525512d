"""``python -m workers``: run an ingestion worker with settings from CELLSEARCH_* variables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The worker's options (``cellsearch worker`` reuses them)."""
    parser = parser or argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="jobs run at once (default: one per GPU with a Qdrant server, else 1)",
    )
    parser.add_argument(
        "--pool",
        choices=("threads", "prefork", "solo"),
        default=None,
        help="prefork needs a Qdrant server (an embedded store is owned by one process)",
    )
    parser.add_argument(
        "--queues",
        default="ingest,default",
        help="comma-separated queues to consume, within this platform's namespace "
        "(CELLSEARCH_NAMESPACE, else derived from the store)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=float,
        default=None,
        help="seconds before Redis redelivers a job whose worker died "
        "(default: CELLSEARCH_INGEST_VISIBILITY_TIMEOUT_S)",
    )
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--hostname", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    from cellsearch.platform import ops
    from cellsearch.platform.jobs import queue_name
    from cellsearch.platform.settings import get_settings
    from workers.runtime import run_worker

    settings = get_settings()
    ops.start_for(settings.model_copy(update={"log_level": args.loglevel}))
    return run_worker(
        settings,
        concurrency=args.concurrency,
        pool=args.pool,
        queues=[queue_name(settings.jobs_namespace, q) for q in args.queues.split(",") if q],
        visibility_timeout_s=args.visibility_timeout,
        loglevel=args.loglevel,
        hostname=args.hostname,
    )


if __name__ == "__main__":
    raise SystemExit(main())
