"""The input contract: reading, validation, bundled real cells and the simulated atlas.

Modules (import from them directly; this package imports nothing heavy on its own):

* ``celldata.errors``: ``DataValidationError`` and one subclass per failure, each with ``.code``
* ``celldata.genes``: the GENCODE human gene table, ``to_symbols``, ``align_genes``
* ``celldata.read``: ``iter_chunks`` (streamed CSR chunks), ``read_metadata``, ``read_whole``
* ``celldata.validate``: ``validate_dataset`` (runs before anything is written)
* ``celldata.bundled``: ``load_pbmc68k_reduced``, ``load_celltypist_sample``
* ``celldata.simulate``: ``make_atlas`` (to .h5ad, chunked), ``simulate_atlas`` (in memory)
* ``celldata.atlas_tables``: ``ATLAS_CELL_TYPES``, tissues, diseases, assays of the atlas
* ``celldata.realism``: ``batch_effect_check`` (PCA+kNN within vs across studies)

See docs/data.md.
"""
