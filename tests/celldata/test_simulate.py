from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import ontology
from celldata.atlas_tables import ATLAS_CELL_TYPES, ATLAS_DISEASES, ATLAS_TISSUES, ILD
from celldata.genes import human_symbols
from celldata.realism import batch_effect_check
from celldata.simulate import make_atlas, simulate_atlas


def test_file_equals_memory_whatever_the_chunk_size(small_atlas: ad.AnnData, atlas_file: Path):
    on_disk = ad.read_h5ad(atlas_file)
    assert (on_disk.X != small_atlas.X).nnz == 0
    pd.testing.assert_frame_equal(on_disk.obs, small_atlas.obs)
    assert list(on_disk.var_names) == list(small_atlas.var_names)


def test_deterministic_by_seed():
    a, b = simulate_atlas(200, 2, seed=7), simulate_atlas(200, 2, seed=7)
    c = simulate_atlas(200, 2, seed=8)
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0


def test_raw_integer_counts_over_real_human_genes(small_atlas: ad.AnnData):
    X = small_atlas.X
    assert X.dtype == np.float32
    assert np.all(X.data > 0)
    assert np.all(X.data == np.round(X.data))
    assert set(small_atlas.var_names) <= human_symbols()
    totals = np.asarray(X.sum(axis=1)).ravel()
    assert 500 < np.median(totals) < 20_000
    assert small_atlas.var_names.is_unique and small_atlas.obs_names.is_unique


def test_every_id_is_a_live_term_of_the_right_kind():
    ids = {spec.ontology_id for spec in ATLAS_CELL_TYPES}
    ids |= {spec.medium_id for spec in ATLAS_CELL_TYPES} | {s.coarse_id for s in ATLAS_CELL_TYPES}
    for term in ids:
        assert ontology.kind_of(term) == "cell_type"
        assert not ontology.get_ontology("cell_type").is_obsolete(term), term
    for spec in ATLAS_CELL_TYPES:  # coarse labels really are ancestors of the leaf type
        assert spec.coarse_id in ontology.ancestors(spec.ontology_id), spec.key
        assert spec.medium_id in ontology.ancestors(spec.ontology_id), spec.key
    for term in ATLAS_TISSUES.values():
        assert ontology.kind_of(term) == "tissue"
    for term in ATLAS_DISEASES.values():
        assert ontology.kind_of(term) == "disease"
        assert not ontology.get_ontology("disease").is_obsolete(term), term


def test_mixed_granularity_donors_nested_and_diseases():
    adata = simulate_atlas(1500, 8, seed=0)
    obs = adata.obs
    labels = set(obs["cell_type_ontology_term_id"].astype(str))
    assert "CL:0000084" in labels  # some study says "T cell" ...
    assert labels & {"CL:0000895", "CL:0000897", "CL:0000815", "CL:0000624"}  # ... others finer
    donors_per_study = obs.groupby("donor_id", observed=True)["study_id"].nunique()
    assert donors_per_study.max() == 1
    assert {"PATO:0000461", ILD} <= set(obs["disease_ontology_term_id"].astype(str))


def test_fibrosis_macrophages_are_enriched_in_interstitial_lung_disease():
    adata = simulate_atlas(2000, 6, seed=2)
    lung = adata.obs[adata.obs["tissue_ontology_term_id"] == "UBERON:0002048"]
    fibrotic = lung["true_cell_type_ontology_term_id"] == "CL:4033043"
    by_disease = fibrotic.groupby(lung["disease_ontology_term_id"].astype(str)).mean()
    assert by_disease[ILD] > 2 * by_disease["PATO:0000461"]


def test_pbmc_types_are_grounded_in_real_markers(small_atlas: ad.AnnData):
    obs = small_atlas.obs
    genes = list(small_atlas.var_names)

    def mean_of(type_id: str, gene: str) -> float:
        cells = (obs["true_cell_type_ontology_term_id"] == type_id).to_numpy()
        return float(small_atlas.X[cells][:, genes.index(gene)].mean())

    assert mean_of("CL:0001054", "LYZ") > 5 * mean_of("CL:0000236", "LYZ")  # monocytes
    assert mean_of("CL:0000236", "CD79A") > 5 * mean_of("CL:0001054", "CD79A")  # B cells


@pytest.mark.slow
def test_batch_effects_matter_but_types_remain_learnable():
    report = batch_effect_check(simulate_atlas(2500, 9, seed=0))
    print(report.summary())
    assert report.within_study_accuracy > 0.9
    assert report.held_out_study_accuracy < report.within_study_accuracy - 0.04
    assert report.held_out_study_accuracy > report.chance_accuracy + 0.4


def test_a_failed_generation_leaves_no_file(tmp_path: Path):
    with pytest.raises(ValueError, match=r"n_cells >= 1"):
        make_atlas(tmp_path / "a.h5ad", n_cells=0, n_studies=2)
    assert list(tmp_path.iterdir()) == []
