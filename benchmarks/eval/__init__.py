"""Evaluation harness: cellsearch's encoder against PCA, Harmony, scVI, scanorama and CellTypist.

One command (``python -m benchmarks.run_all``) builds the splits, embeds every method on the same
cells, scores annotation, integration, retrieval and confidence, gathers the other benchmarks'
performance figures and writes ``benchmarks/results/REPORT.md`` with its plots.

Modules, one job each: ``config`` (sizes), ``datasets`` (splits), ``methods`` (embeddings),
``metrics`` (pure scoring maths, unit-tested), ``knn`` (neighbours and votes), ``tasks`` (the four
tasks), ``integration`` (scib-metrics), ``plots``, ``perf`` (other benchmarks), ``report``.
"""
