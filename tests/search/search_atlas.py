"""The constructed labelled atlas of the search tests (real CL/UBERON/MONDO terms).

A uniquely named module (not conftest) so test files can import its constants whatever
other conftest modules pytest has loaded.
"""

from __future__ import annotations

import numpy as np

import ontology
from vectorstore import CellRecord

CD4, CD8, B_CELL, NK, MONOCYTE = (
    "CL:0000624",
    "CL:0000625",
    "CL:0000236",
    "CL:0000623",
    "CL:0000576",
)
T_CELL = "CL:0000084"
LUNG, BLOOD = "UBERON:0002048", "UBERON:0000178"
NORMAL, COVID = "PATO:0000461", "MONDO:0100096"
REFERENCE_TYPES = (CD4, CD8, B_CELL, NK)  # the monocyte is held out: the atlas never saw one
N_PER_TYPE = 60


def _centres(seed: int = 0) -> dict[str, np.ndarray]:
    """Cluster centres: CD4 and CD8 close (siblings), the others far apart."""
    rng = np.random.default_rng(seed)
    base = {ct: rng.normal(size=128) for ct in (B_CELL, NK, MONOCYTE)}
    t = rng.normal(size=128)
    base[CD4] = t + 0.2 * rng.normal(size=128)
    base[CD8] = t + 0.2 * rng.normal(size=128)
    return {k: (v / np.linalg.norm(v)).astype(np.float32) for k, v in base.items()}


CENTRES = _centres()
NOISE = 0.035  # per-dimension noise: cells sit at cosine ~0.85 from their centre


def sample_cells(cell_type: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (CENTRES[cell_type] + NOISE * rng.normal(size=(n, 128))).astype(np.float32)


def payload(cell_type: str, tissue: str, disease: str, study: str, donor: str) -> dict:
    return {
        "study_id": study,
        "donor_id": donor,
        "sample_id": f"{donor}-s",
        "cell_type_id": cell_type,
        "cell_type_ancestors": sorted(ontology.ancestors(cell_type)),
        "tissue_id": tissue,
        "tissue_ancestors": sorted(ontology.ancestors(tissue)),
        "disease_id": disease,
        "disease_ancestors": sorted(ontology.ancestors(disease)),
        "assay": "EFO:0009922",
        "model_version": "test-1",
    }


def build_atlas() -> list[CellRecord]:
    records = []
    for t, ct in enumerate(REFERENCE_TYPES):
        vecs = sample_cells(ct, N_PER_TYPE, seed=100 + t)
        for j, vec in enumerate(vecs):
            study = f"study{j % 4}"
            pl = payload(
                ct, (LUNG, BLOOD)[j % 2], (NORMAL, COVID)[(j // 2) % 2], study, f"donor{j % 6}"
            )
            records.append(CellRecord(f"{study}-ds", f"{ct}-{j}", vec, pl))
    return records
