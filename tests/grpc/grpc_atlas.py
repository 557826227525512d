"""The small labelled atlas the gRPC tests seed their server with (importable by tests).

Four cell types (macrophage, alveolar macrophage, T cell, B cell) in three studies (lung with
interstitial lung disease, normal lung, normal blood), each type a tight cluster around its
own random direction, so the right answers are known.
"""

from __future__ import annotations

import numpy as np

TOKEN = "test-token-0123"

CELL_TYPES = {
    "macrophage": "CL:0000235",
    "alveolar macrophage": "CL:0000583",
    "T cell": "CL:0000084",
    "B cell": "CL:0000236",
}
LUNG, BLOOD = "UBERON:0002048", "UBERON:0000178"
ILD, NORMAL = "MONDO:0015925", "PATO:0000461"
STUDIES = {  # study -> (tissue, disease, cell types present)
    "ild-lung": (LUNG, ILD, ["macrophage", "alveolar macrophage", "T cell"]),
    "normal-lung": (LUNG, NORMAL, ["macrophage", "alveolar macrophage", "T cell"]),
    "pbmc": (BLOOD, NORMAL, ["T cell", "B cell"]),
}
CELLS_PER_TYPE = 20


def type_centers(dim: int = 128, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in CELL_TYPES:
        v = rng.normal(size=dim)
        out[name] = v / np.linalg.norm(v)
    return out


def atlas_records() -> list:
    import ontology
    from vectorstore import CellRecord

    rng = np.random.default_rng(11)
    centers = type_centers()
    records = []
    for study, (tissue, disease, types) in STUDIES.items():
        for name in types:
            term = CELL_TYPES[name]
            for i in range(CELLS_PER_TYPE):
                vec = centers[name] + rng.normal(scale=0.05, size=128)
                cell_id = f"{study}-{name.replace(' ', '_')}-{i}"
                records.append(
                    CellRecord(
                        dataset_id=f"{study}/d1",
                        cell_id=cell_id,
                        vector=vec / np.linalg.norm(vec),
                        payload={
                            "study_id": study,
                            "donor_id": f"{study}-donor{i % 2}",
                            "sample_id": f"{study}-s{i % 2}",
                            "cell_type_id": term,
                            "cell_type_ancestors": sorted(ontology.ancestors(term)),
                            "tissue_id": tissue,
                            "tissue_ancestors": sorted(ontology.ancestors(tissue)),
                            "disease_id": disease,
                            "disease_ancestors": sorted(ontology.ancestors(disease)),
                            "assay": "EFO:0009922",
                            "model_version": "test-model",
                        },
                    )
                )
    return records
