/*
 * An empty Python module around first_layer.c: importing `encoder._first_layer` tells
 * Python code where the compiled library is; its functions are called through ctypes
 * (see encoder/kernels.py), which releases the GIL for the duration of each call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef first_layer_module = {
    PyModuleDef_HEAD_INIT, "_first_layer",
    "The sparse first layer's C kernel; call it through encoder.kernels.", -1, NULL,
};

PyMODINIT_FUNC PyInit__first_layer(void) { return PyModule_Create(&first_layer_module); }
