"""The one compiled part of cellsearch: the sparse first layer's C kernel.

Everything else is declared in pyproject.toml. The kernel is optional at run time
(``encoder.sparse`` falls back to numba when it is missing), so it is built as an
optional extension: without a C compiler the install still succeeds.
"""

from setuptools import Extension, setup

ext_modules = [
    Extension(
        "encoder._first_layer",
        sources=["encoder/csrc/first_layer.c", "encoder/csrc/module.c"],
        # fp-contract lets the compiler fuse multiply-adds; the target clones inside
        # pick AVX-512, AVX2+FMA or SSE at load time, so no -march=native here.
        extra_compile_args=["-O3", "-ffp-contract=fast", "-std=c11"],
        optional=True,
    )
]

setup(ext_modules=ext_modules)
