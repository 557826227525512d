"""The demo's real-data input: pbmc68k_reduced restored to integer counts on the panel."""

from __future__ import annotations

import anndata as ad
import numpy as np


def test_pbmc_counts_are_integers_on_the_panel_with_a_disjoint_held_out_set(tmp_path) -> None:
    from celldata.bundled import load_pbmc68k_reduced
    from cellsearch.app.demo import write_pbmc_counts

    genes = [str(g) for g in load_pbmc68k_reduced().raw.var_names]
    panel = ["NOT_A_GENE_1", *genes[:400], "NOT_A_GENE_2"]
    path, held = write_pbmc_counts(tmp_path, panel=panel, held_out=100)
    ref = ad.read_h5ad(path)
    assert list(ref.var_names) == panel == list(held.var_names)
    assert ref.n_obs == 600 and held.n_obs == 100
    assert not set(ref.obs_names) & set(held.obs_names)
    x = ref.X.toarray()
    assert np.array_equal(x, np.rint(x)) and x.min() >= 0
    assert x[:, 0].sum() == 0 and x[:, -1].sum() == 0  # genes pbmc68k lacks stay zero
    assert (x[:, 1:-1].sum(axis=1) > 0).all()
    assert ref.obs["cell_type_ontology_term_id"].str.startswith("CL:").all()
    assert "bulk_labels" not in ref.obs  # the truth of held-out cells never enters the atlas
