"""The ``cellsearch`` command line.

Client commands (ingest, search, annotate, resolve, stats) talk to a server through
:class:`~cellsearch.client.CellSearchClient`; ``serve`` runs the embedded platform
(``cellsearch.app.embedded``) or the server alone; ``worker`` a Celery worker; ``train``
fits an encoder on a labelled reference; ``demo`` runs the whole platform end to end.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cellsearch.app.embedded import start_ops, start_platform
from cellsearch.platform.settings import Settings

log = logging.getLogger(__name__)

#: ``cellsearch train``'s default time budget: the recipe fits references of 10k-200k cells
#: on two CPU cores within it (the schedule shrinks to what fits).
DEFAULT_TRAIN_MINUTES = 15.0


# ------------------------------------------------------------------------------ the CLI

#: Help of the filter options; every other ``Filter`` field gets a generic line.
_FILTER_HELP: dict[str, str] = {
    "cell_types": "cell type (CL id or name)",
    "tissues": "tissue (UBERON id or name)",
    "diseases": "disease (MONDO id, name, or 'normal')",
    "studies": "only this study id",
    "exclude_studies": "never this study id",
    "donors": "only this donor id",
    "datasets": "only this dataset id",
    "assays": "only this assay (EFO id)",
    "exclude_cell_types": "never this cell type or its subtypes",
    "exclude_tissues": "never this tissue or its parts",
    "exclude_diseases": "never this disease or its subtypes",
    "exclude_query_studies": "leave out the studies of the query cells (stored-cell queries)",
    "exact_terms": "match terms only, not descendants",
}


def _singular(name: str) -> str:
    """``cell_types`` -> ``cell-type``, ``studies`` -> ``study``: one value per flag."""
    stem = name[:-3] + "y" if name.endswith("ies") else name.removesuffix("s")
    return stem.replace("_", "-")


def filter_options() -> list[tuple[str, str, bool]]:
    """(flag, proto field, is a switch) for every field of the proto's ``Filter``."""
    from cellsearch.v1 import cellsearch_pb2 as pb

    options = []
    for field in pb.Filter.DESCRIPTOR.fields:
        switch = field.type == field.TYPE_BOOL
        flag = field.name.replace("_", "-") if switch else _singular(field.name)
        options.append((f"--{flag}", field.name, switch))
    return options


def _add_filter_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filter")
    for flag, dest, switch in filter_options():
        text = _FILTER_HELP.get(dest, dest.replace("_", " "))
        if switch:
            aliases = ("--exact",) if dest == "exact_terms" else ()
            g.add_argument(flag, *aliases, dest=dest, action="store_true", help=text)
        else:
            g.add_argument(flag, dest=dest, action="append", default=[], help=f"{text}; repeatable")


def _filter_from(args: argparse.Namespace) -> dict[str, Any] | None:
    """The filter dict (proto field names) the options of a command set."""
    spec = {dest: getattr(args, dest) for _, dest, _ in filter_options()}
    spec = {k: v for k, v in spec.items() if v}
    return spec or None


def build_parser() -> argparse.ArgumentParser:
    """The ``cellsearch`` argument parser (every subcommand and its options)."""
    parser = argparse.ArgumentParser(
        prog="cellsearch",
        description="Find similar human cells across a single-cell atlas.",
    )
    parser.add_argument(
        "--address", help="server host:port (default: CELLSEARCH_GRPC_ADDRESS)", default=None
    )
    parser.add_argument(
        "--token", help="bearer token (default: CELLSEARCH_AUTH_TOKEN)", default=None
    )
    parser.add_argument("--tls-ca", type=Path, help="PEM root certificate: connect with TLS")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gRPC server (embedded: with store and worker)")
    p.add_argument(
        "--worker",
        choices=("auto", "redis", "in-process", "none"),
        default="auto",
        help="ingestion worker: through Redis when it answers (auto), always, in-process, none",
    )

    p = sub.add_parser("worker", help="run an ingestion worker process (Celery)")
    p.add_argument("--concurrency", type=int, default=None)

    p = sub.add_parser(
        "train",
        help="train an encoder on a labelled reference of raw counts (.h5ad files or folders)",
    )
    p.add_argument(
        "files",
        type=Path,
        nargs="+",
        metavar="REFERENCE",
        help=".h5ad files or folders of them: one study per file, or a study column",
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument(
        "--val-study",
        action="append",
        default=[],
        help="hold out this study to score each epoch (repeatable; default: a share of them)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=DEFAULT_TRAIN_MINUTES,
        help=f"time budget; the schedule shrinks to fit (default {DEFAULT_TRAIN_MINUTES:g})",
    )
    p.add_argument("--epochs", type=int, default=None, help="most epochs (default: the recipe's)")
    p.add_argument("--label-key", default="cell_type_ontology_term_id")
    p.add_argument("--study-key", default="study_id")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("ingest", help="submit a dataset for ingestion")
    p.add_argument("file", help="path as the server sees it (under its allowed roots)")
    p.add_argument(
        "--study",
        default="",
        help="study id of every cell (default: the file's own study_id column)",
    )
    p.add_argument("--dataset", default="", help="dataset id (default: study/file name)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--wait", action="store_true", help="follow the job with a progress bar")

    p = sub.add_parser("search", help="find cells similar to query cells")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--cells", nargs="+", metavar="CELL", help="stored cell ids (or dataset/cell)")
    q.add_argument("--file", type=Path, help=".h5ad of raw counts: its cells are the query")
    p.add_argument("--layer", default=None, help=LAYER_HELP)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--centroid", action="store_true", help="search from the query's centroid")
    p.add_argument("-o", "--out", type=Path, help="write hits as CSV instead of printing")
    _add_filter_args(p)

    p = sub.add_parser("annotate", help="label the cells of an .h5ad by kNN over the atlas")
    p.add_argument("file", type=Path, help=".h5ad of raw counts")
    p.add_argument("-o", "--out", type=Path, required=True, help="annotated .h5ad to write")
    p.add_argument("--layer", default=None, help=LAYER_HELP)
    p.add_argument(
        "-k",
        type=int,
        default=0,
        help="candidate reference neighbours per cell (0: 100; each study's nearest 3 vote)",
    )
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument(
        "--batch-timeout", type=float, default=300, help="seconds allowed per batch (not per job)"
    )
    p.add_argument(
        "--unknown-quantile",
        type=float,
        default=0.0,
        help="how strict the unknown flag is (default: the server's, 0.95; 0.8 flags more)",
    )
    _add_filter_args(p)

    p = sub.add_parser("resolve", help="look up an ontology term")
    p.add_argument("text")
    p.add_argument("--kind", choices=("cell_type", "tissue", "disease"), default="cell_type")

    p = sub.add_parser("stats", help="cells in the atlas by type, tissue, disease, study")
    p.add_argument("--by", action="append", default=[])
    p.add_argument("--top", type=int, default=15)
    _add_filter_args(p)

    p = sub.add_parser("demo", help="run the end-to-end demo (embedded, self-contained)")
    p.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--atlas-cells", type=int, default=20_000)
    p.add_argument("--keep", action="store_true", help="keep the demo's store and files")
    return parser


def _client(args: argparse.Namespace, settings: Settings) -> Any:
    from cellsearch.client import CellSearchClient

    token = args.token
    if token is None and settings.auth_token is not None:
        token = settings.auth_token.get_secret_value()
    return CellSearchClient(
        args.address or settings.grpc_address,
        token=token,
        root_certificates=args.tls_ca.read_bytes() if args.tls_ca else None,
        timeout=300,
    )


LAYER_HELP = (
    "matrix holding raw counts: X, raw, or a layer name (default: layers['counts'], else "
    ".raw if it holds counts, else X)"
)


def _cell_refs(cells: list[str]) -> list[Any]:
    return [tuple(c.rsplit("/", 1)) if "/" in c else c for c in cells]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.worker == "none" or settings.store_mode == "server":
        # Scale mode (or no worker wanted): the server alone; workers run elsewhere.
        from services.search.server import serve

        start_ops(settings)
        serve(settings)
        return 0
    use_redis = {"auto": None, "redis": True, "in-process": False}[args.worker]
    platform = start_platform(settings, use_redis=use_redis)
    start_ops(settings, jobs=platform.jobs, store=platform.store)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print(
        f"cellsearch serving on {platform.address} (embedded store {settings.store_path}, "
        f"worker: {platform.mode})",
        flush=True,
    )
    stopped.wait()
    platform.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.runtime import run_worker

    start_ops(settings)
    return run_worker(settings, concurrency=args.concurrency)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from celldata.reference import read_reference
    from encoder.config import TrainConfig
    from encoder.model import CellEncoder

    adata, report = read_reference(args.files, study_key=args.study_key, label_key=args.label_key)
    n_types = adata.obs[args.label_key].nunique()
    print(
        f"reference: {report.cells} cells, {len(report.studies)} studies, {n_types} cell types "
        f"from {len(report.files)} file(s); genes: {report.gene_rule}",
        flush=True,
    )
    config = replace(
        TrainConfig(),
        val_studies=tuple(args.val_study),
        max_minutes=args.minutes or None,
        label_key=args.label_key,
        study_key=args.study_key,
        device=args.device,
        seed=args.seed,
    )
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    model = CellEncoder.train(adata, config=config)
    model.save(args.out)
    print(training_summary(model), flush=True)
    print(f"saved to {args.out}")
    return 0


def training_summary(model: Any) -> str:
    """What a run learned from and how well it generalised, in a few lines."""
    t = model.training
    lines = [
        f"trained {model!r} in {t.get('seconds', 0):.0f} s on {t.get('device', '?')}",
        f"  cells: {t.get('n_train_cells', 0)} training + {t.get('n_val_cells', 0)} held out; "
        f"studies: {len(t.get('studies', []))}; cell types: {len(model.labels)}",
    ]
    history = t.get("history", [])
    if t.get("val_studies"):
        best: dict[str, Any] = next(
            (r for r in history if r.get("epoch") == t.get("best_epoch")), {}
        )
        lines.append(
            f"  held-out studies {', '.join(t['val_studies'])}: macro-F1 "
            f"{best.get('val_macro_f1', float('nan')):.3f}, accuracy "
            f"{best.get('val_accuracy', float('nan')):.3f} at epoch {t.get('best_epoch')} "
            f"of {len(history)} (best weights kept)"
        )
    else:
        lines.append(f"  no held-out study (fewer than 3 studies); {len(history)} epochs")
    return "\n".join(lines)


def follow_job(client: Any, job_id: str, *, out: Any = None) -> Any:
    """Follow a job to its end with a progress bar; returns its final record."""
    from tqdm import tqdm

    last = None
    with tqdm(total=0, unit="cells", file=out or sys.stderr, dynamic_ncols=True) as bar:
        for job in client.watch_job(job_id):
            if job.cells_total and bar.total != job.cells_total:
                bar.total = job.cells_total
            bar.set_description(str(job.state).lower())
            bar.update(job.cells_done - bar.n)
            last = job
    return last if last is not None else client.get_job(job_id)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    metadata = dict(item.split("=", 1) for item in args.meta)
    with _client(args, settings) as client:
        job = client.submit_ingestion(
            str(Path(args.file).resolve()), args.study, dataset_id=args.dataset, metadata=metadata
        )
        print(f"job {job.job_id}: dataset {job.dataset_id} {job.state}")
        if not args.wait:
            return 0
        job = follow_job(client, job.job_id)
    print(f"job {job.job_id}: {job.state}, {job.cells_done} cells", end="")
    print(f" ({job.error})" if job.error else "")
    return 0 if job.state == "SUCCEEDED" else 1


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    kw: dict[str, Any] = {"k": args.k, "filter": _filter_from(args)}
    if args.cells:
        query: Any = _cell_refs(args.cells)
    else:
        import anndata as ad

        query = ad.read_h5ad(args.file)  # hits are named by the file's cell names
        kw["layer"] = args.layer
    with _client(args, settings) as client:
        if args.centroid:
            hits, coherence = client.search_centroid(query, **kw)
            print(f"query coherence: {coherence:.2f}")
        else:
            hits = client.search(query, **kw)
    if args.out:
        hits.to_csv(args.out, index=False)
        print(f"{len(hits)} hits written to {args.out}")
    else:
        print(format_hits(hits))
    return 0


def format_hits(hits: Any, limit: int = 40) -> str:
    cols = [
        c
        for c in ("rank", "score", "cell_type", "tissue", "disease", "study_id", "cell_id")
        if c in hits.columns
    ]
    if "query" in hits.columns and hits["query"].nunique() > 1:
        cols.insert(0, "query")
    return hits[cols].head(limit).to_string(index=False, float_format=lambda v: f"{v:.3f}")


def cmd_annotate(args: argparse.Namespace, settings: Settings) -> int:
    import anndata as ad

    from cellsearch.client import CellSearchError

    adata = ad.read_h5ad(args.file)
    try:
        with _client(args, settings) as client:
            ann = client.annotate(
                adata,
                k=args.k,
                filter=_filter_from(args),
                batch_size=args.batch_size,
                timeout=args.batch_timeout,
                layer=args.layer,
                unknown_quantile=args.unknown_quantile,
                progress=True,
            )
    except CellSearchError as exc:
        partial = exc.partial
        if partial is not None and len(partial):
            write_annotations(adata, partial, args.out)
            print(
                f"cellsearch annotate: {len(partial)} of {adata.n_obs} cells annotated before "
                f"the error; they are in {args.out}",
                file=sys.stderr,
            )
        raise
    write_annotations(adata, ann, args.out)
    counts = ann["cell_type"].value_counts().head(10)
    print(f"annotated {len(ann)} cells -> {args.out}")
    print(counts.to_string())
    return 0


def write_annotations(adata: Any, ann: Any, out: Path) -> None:
    """``obs`` columns ``cellsearch_<field>`` and ``uns["cellsearch"]``, then the file."""
    from cellsearch.search.frames import write_annotations as write_into

    write_into(adata, ann, key_added="cellsearch")
    adata.write_h5ad(out)


def cmd_resolve(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        term, label = client.resolve(args.text, args.kind)
    print(f"{term}\t{label}")
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        total, facets = client.stats(filter=_filter_from(args), by=args.by, top=args.top)
    print(f"{total} cells")
    for name, frame in facets.items():
        print(f"\nby {name}:")
        print(frame.to_string(index=False))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from cellsearch.app.demo import run_demo

    return run_demo(workdir=args.workdir, atlas_cells=args.atlas_cells, keep=args.keep)


COMMANDS = {
    "serve": cmd_serve,
    "worker": cmd_worker,
    "train": cmd_train,
    "ingest": cmd_ingest,
    "search": cmd_search,
    "annotate": cmd_annotate,
    "resolve": cmd_resolve,
    "stats": cmd_stats,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from celldata.errors import DataValidationError
    from cellsearch.client import CellSearchError
    from cellsearch.platform.settings import get_settings
    from vectorstore import StoreLockedError

    try:
        return COMMANDS[args.command](args, get_settings())
    except CellSearchError as exc:
        print(f"cellsearch {args.command}: {exc}", file=sys.stderr)
        return 2
    except DataValidationError as exc:  # an input refused before anything was sent
        print(f"cellsearch {args.command}: {exc}", file=sys.stderr)
        return 2
    except StoreLockedError as exc:
        print(f"cellsearch {args.command}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
