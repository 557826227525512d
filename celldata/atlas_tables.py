"""The simulated atlas's vocabulary: cell types (real CL ids), tissues, diseases, assays.

Every id here was checked against the CL/UBERON/MONDO/EFO releases that ship with
cellxgene-ontology-guide. Cell types are *leaf* types (what a cell truly is); each study
labels them at its own granularity (``fine``, ``medium``, ``coarse``), the way real studies
say "T cell" where others say "CD4-positive, alpha-beta T cell".
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CellTypeSpec:
    """One leaf type of the simulated atlas.

    ``pbmc_label`` grounds the profile in pbmc68k_reduced's mean for that bulk label;
    otherwise the profile derives from ``base`` (another key) or from the shared baseline,
    plus ``markers`` raised to a fixed share of the library.
    """

    key: str
    ontology_id: str
    label: str
    medium_id: str
    coarse_id: str
    pbmc_label: str | None = None
    base: str | None = None
    markers: tuple[str, ...] = ()
    immune: bool = True
    tissue_weights: dict[str, float] = field(default_factory=dict)


T_CELL = "CL:0000084"
CD4_T = "CL:0000624"
CD8_T = "CL:0000625"
MONOCYTE = "CL:0000576"
MACROPHAGE = "CL:0000235"
FIBROBLAST = "CL:0000057"
EPITHELIAL = "CL:0000066"

ATLAS_CELL_TYPES: tuple[CellTypeSpec, ...] = (
    CellTypeSpec(
        "cd14_mono", "CL:0001054", "CD14-positive monocyte", MONOCYTE, MONOCYTE,
        pbmc_label="CD14+ Monocyte", markers=("CD14", "LYZ", "S100A8", "S100A9"),
        tissue_weights={"blood": 0.16, "lung": 0.06, "liver": 0.06, "kidney": 0.06},
    ),
    CellTypeSpec(
        "cd16_mono", "CL:0002396", "CD14-low, CD16-positive monocyte", MONOCYTE, MONOCYTE,
        base="cd14_mono", markers=("FCGR3A", "MS4A7", "CDKN1C", "LST1"),
        tissue_weights={"blood": 0.05, "lung": 0.02, "liver": 0.02},
    ),
    CellTypeSpec(
        "dc", "CL:0000451", "dendritic cell", "CL:0000451", "CL:0000451",
        pbmc_label="Dendritic", markers=("FCER1A", "CD1C", "CLEC10A"),
        tissue_weights={"blood": 0.04, "lung": 0.03, "kidney": 0.02},
    ),
    CellTypeSpec(
        "b", "CL:0000236", "B cell", "CL:0000236", "CL:0000236",
        pbmc_label="CD19+ B", markers=("MS4A1", "CD79A", "CD79B"),
        tissue_weights={"blood": 0.12, "lung": 0.03, "liver": 0.04, "kidney": 0.03},
    ),
    CellTypeSpec(
        "nk", "CL:0000623", "natural killer cell", "CL:0000623", "CL:0000623",
        pbmc_label="CD56+ NK", markers=("NKG7", "GNLY", "KLRD1"),
        tissue_weights={"blood": 0.10, "lung": 0.05, "liver": 0.08, "kidney": 0.05},
    ),
    CellTypeSpec(
        "treg", "CL:0000815", "regulatory T cell", T_CELL, T_CELL,  # CL: not under CD4 a-b
        pbmc_label="CD4+/CD25 T Reg", markers=("FOXP3", "IL2RA", "CTLA4"),
        tissue_weights={"blood": 0.05, "lung": 0.02},
    ),
    CellTypeSpec(
        "cd4_naive", "CL:0000895", "naive thymus-derived CD4-positive, alpha-beta T cell",
        CD4_T, T_CELL, pbmc_label="CD4+/CD45RA+/CD25- Naive T", markers=("CCR7", "SELL", "LEF1"),
        tissue_weights={"blood": 0.12},
    ),
    CellTypeSpec(
        "cd4_memory", "CL:0000897", "CD4-positive, alpha-beta memory T cell", CD4_T, T_CELL,
        pbmc_label="CD4+/CD45RO+ Memory", markers=("IL7R", "CD40LG", "S100A4"),
        tissue_weights={"blood": 0.12, "lung": 0.06, "liver": 0.05, "kidney": 0.05},
    ),
    CellTypeSpec(
        "cd8_cytotoxic", "CL:0000625", "CD8-positive, alpha-beta T cell", CD8_T, T_CELL,
        pbmc_label="CD8+ Cytotoxic T", markers=("CD8A", "CD8B", "GZMK"),
        tissue_weights={"blood": 0.12, "lung": 0.06, "liver": 0.08, "kidney": 0.06},
    ),
    CellTypeSpec(
        "cd8_naive", "CL:0000900", "naive thymus-derived CD8-positive, alpha-beta T cell",
        CD8_T, T_CELL, pbmc_label="CD8+/CD45RA+ Naive Cytotoxic", markers=("CD8A", "CCR7"),
        tissue_weights={"blood": 0.08},
    ),
    CellTypeSpec(
        "hsc", "CL:0000037", "hematopoietic stem cell", "CL:0000037", "CL:0000037",
        pbmc_label="CD34+", markers=("CD34", "PROM1"), tissue_weights={"blood": 0.02},
    ),
    CellTypeSpec(
        "alveolar_mac", "CL:0000583", "alveolar macrophage", MACROPHAGE, MACROPHAGE,
        base="cd14_mono", markers=("MARCO", "FABP4", "APOE", "C1QA", "C1QB", "MRC1", "INHBA"),
        tissue_weights={"lung": 0.20},
    ),
    CellTypeSpec(
        # The fibrosis-associated (SPP1+, profibrotic) macrophages of interstitial lung
        # disease are monocyte-derived interstitial macrophages: CL "lung interstitial macrophage".
        "fibrotic_mac", "CL:4033043", "lung interstitial macrophage", MACROPHAGE, MACROPHAGE,
        base="cd14_mono", markers=("SPP1", "CHI3L1", "CHIT1", "TREM2", "MMP9", "CCL18", "GPNMB"),
        tissue_weights={"lung": 0.02},
    ),
    CellTypeSpec(
        "tissue_mac", "CL:0000235", "macrophage", MACROPHAGE, MACROPHAGE,
        base="cd14_mono", markers=("CD5L", "VSIG4", "MARCO", "C1QC"),
        tissue_weights={"liver": 0.08, "kidney": 0.03},
    ),
    CellTypeSpec(
        "lung_fibroblast", "CL:0002553", "fibroblast of lung", FIBROBLAST, FIBROBLAST,
        markers=("COL1A1", "COL1A2", "DCN", "LUM", "PDGFRA", "TCF21"), immune=False,
        tissue_weights={"lung": 0.12},
    ),
    CellTypeSpec(
        "myofibroblast", "CL:0000186", "myofibroblast cell", "CL:0000186", "CL:0000186",
        base="lung_fibroblast", markers=("ACTA2", "CTHRC1", "COL3A1", "POSTN", "TAGLN"),
        immune=False, tissue_weights={"lung": 0.02},
    ),
    CellTypeSpec(
        "fibroblast", "CL:0000057", "fibroblast", FIBROBLAST, FIBROBLAST,
        base="lung_fibroblast", markers=("COL1A1", "DCN", "PDGFRB", "RGS5"), immune=False,
        tissue_weights={"liver": 0.06, "kidney": 0.08},
    ),
    CellTypeSpec(
        "at2", "CL:0002063", "pulmonary alveolar type 2 cell", EPITHELIAL, EPITHELIAL,
        markers=("SFTPC", "SFTPB", "SFTPA1", "NAPSA", "LAMP3", "EPCAM"), immune=False,
        tissue_weights={"lung": 0.18},
    ),
    CellTypeSpec(
        "hepatocyte", "CL:0000182", "hepatocyte", EPITHELIAL, EPITHELIAL,
        markers=("ALB", "APOA1", "HP", "TF", "SERPINA1", "CYP3A4"), immune=False,
        tissue_weights={"liver": 0.42},
    ),
    CellTypeSpec(
        "proximal_tubule", "CL:0002306", "epithelial cell of proximal tubule", EPITHELIAL,
        EPITHELIAL, markers=("LRP2", "CUBN", "SLC34A1", "GPX3", "EPCAM"), immune=False,
        tissue_weights={"kidney": 0.47},
    ),
    CellTypeSpec(
        "endothelial", "CL:0000115", "endothelial cell", "CL:0000115", "CL:0000115",
        markers=("PECAM1", "VWF", "CDH5", "CLDN5"), immune=False,
        tissue_weights={"lung": 0.11, "liver": 0.11, "kidney": 0.10},
    ),
)  # fmt: skip

CELL_TYPE_LABELS: dict[str, str] = {
    T_CELL: "T cell",
    CD4_T: "CD4-positive, alpha-beta T cell",
    CD8_T: "CD8-positive, alpha-beta T cell",
    MONOCYTE: "monocyte",
    MACROPHAGE: "macrophage",
    FIBROBLAST: "fibroblast",
    EPITHELIAL: "epithelial cell",
    **{spec.ontology_id: spec.label for spec in ATLAS_CELL_TYPES},
}

ATLAS_TISSUES: dict[str, str] = {
    "blood": "UBERON:0000178",
    "lung": "UBERON:0002048",
    "liver": "UBERON:0002107",
    "kidney": "UBERON:0002113",
}
TISSUE_STUDY_WEIGHTS: dict[str, float] = {
    "blood": 0.35,
    "lung": 0.35,
    "liver": 0.15,
    "kidney": 0.15,
}

NORMAL = "PATO:0000461"
ILD = "MONDO:0015925"  # interstitial lung disease
COVID19 = "MONDO:0100096"
ATLAS_DISEASES: dict[str, str] = {
    "normal": NORMAL,
    "interstitial lung disease": ILD,
    "COVID-19": COVID19,
    "cirrhosis of liver": "MONDO:0005155",
    "chronic kidney disease": "MONDO:0005300",
}
TISSUE_DISEASES: dict[str, tuple[str, ...]] = {
    "blood": (COVID19,),
    "lung": (ILD, COVID19),
    "liver": ("MONDO:0005155",),
    "kidney": ("MONDO:0005300",),
}
# How a disease shifts composition (multipliers on leaf-type weights) ...
DISEASE_COMPOSITION: dict[str, dict[str, float]] = {
    ILD: {"fibrotic_mac": 8.0, "myofibroblast": 5.0, "lung_fibroblast": 1.5, "at2": 0.5},
    COVID19: {"cd14_mono": 2.0, "fibrotic_mac": 3.0, "alveolar_mac": 0.5, "nk": 1.3},
    "MONDO:0005155": {"fibroblast": 3.0, "tissue_mac": 1.5, "hepatocyte": 0.7},
    "MONDO:0005300": {"fibroblast": 2.0, "proximal_tubule": 0.7, "cd14_mono": 1.5},
}
# ... and which genes it raises in which cells (log-scale boost).
DISEASE_PROGRAMS: dict[str, tuple[tuple[str, ...], float, bool]] = {
    # genes, log boost, immune cells only
    COVID19: (("ISG15", "IFI6", "IFIT1", "IFIT3", "MX1", "IFI44L", "LY6E"), 1.5, True),
    ILD: (("SPP1", "MMP7", "COL1A1", "COL3A1", "FN1"), 0.7, False),
}

ATLAS_ASSAYS: dict[str, str] = {
    "10x 3' v2": "EFO:0009899",
    "10x 3' v3": "EFO:0009922",
    "10x 5' v1": "EFO:0011025",
}

GRANULARITIES: tuple[str, ...] = ("fine", "medium", "coarse")


def study_label(spec: CellTypeSpec, granularity: str) -> str:
    """The CL id a study of this labelling granularity writes for a cell of this leaf type."""
    if granularity == "coarse":
        return spec.coarse_id
    if granularity == "medium":
        return spec.medium_id
    return spec.ontology_id


def marker_genes() -> list[str]:
    """Every gene named by a type marker list or a disease program (kept in every gene set)."""
    genes: list[str] = []
    for spec in ATLAS_CELL_TYPES:
        genes.extend(spec.markers)
    for program, _, _ in DISEASE_PROGRAMS.values():
        genes.extend(program)
    return list(dict.fromkeys(genes))
