/*
 * h5z_tezip.c - HDF5 dynamically loaded filter plugin for filter id 421 ("tezip_hpc").
 *
 * Decode only: each chunk is handed to the Python function
 *     tezip_hpc.archive.h5filter.plugin_decode(cd: bytes, payload: bytes) -> bytes
 * (cd = the filter's cd_values as little-endian uint32), so that h5dump, HDFView, silx or any
 * other libhdf5 program can read /frames of a tezip-hpc archive.
 *
 * Neither libhdf5 nor libpython is linked. <hdf5.h> only gives the types and constants, and
 * every Python C-API function is resolved at first use with dlsym(): from the host process when
 * it already has a Python (h5py), else from TEZIP_LIBPYTHON, dlopen'ed RTLD_GLOBAL (h5dump). An
 * uninitialised interpreter is started as TEZIP_PYEXE (the build-time venv's bin/python), so that
 * sys.prefix is that venv and its site-packages (with an editable install's .pth) are on sys.path.
 *
 * Build with scripts/build-plugin.sh PYTHON [OUTDIR], which defines TEZIP_PYEXE and
 * TEZIP_LIBPYTHON. Load with HDF5_PLUGIN_PATH=<directory of libh5z_tezip.so>.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* types and struct layouts only (PyConfig, PyStatus): nothing is linked */
#include <hdf5.h>
#include <H5PLextern.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TEZIP_PYEXE
#error "define TEZIP_PYEXE (absolute path of the venv's bin/python); use scripts/build-plugin.sh"
#endif
#ifndef TEZIP_LIBPYTHON
#error "define TEZIP_LIBPYTHON (absolute path of libpython); use scripts/build-plugin.sh"
#endif

#define TEZIP_FILTER_ID 421
#define TEZIP_MODULE "tezip_hpc.archive.h5filter"
#define TEZIP_FUNCTION "plugin_decode"
#define MSG "tezip_hpc filter: "

/* What the build was made for; scripts/build-plugin.sh greps for it to skip a rebuild. */
__attribute__((used)) static const char tezip_build_info[] =
    "tezip-build:" TEZIP_PYEXE "|" TEZIP_LIBPYTHON "|end";

/* The Python C-API functions used, each held in a pointer p_<name> resolved at run time. */
#define PY_FUNCS(X)                                                                            \
    X(Py_IsInitialized) X(PyConfig_InitPythonConfig) X(PyConfig_SetBytesString)                \
    X(PyConfig_Clear) X(Py_InitializeFromConfig) X(PyStatus_Exception) X(PyEval_SaveThread)    \
    X(PyGILState_Ensure) X(PyGILState_Release) X(PyImport_ImportModule)                        \
    X(PyObject_GetAttrString) X(PyBytes_FromStringAndSize) X(PyBytes_AsStringAndSize)          \
    X(PyObject_CallFunctionObjArgs) X(Py_DecRef) X(PyErr_Fetch) X(PyErr_NormalizeException)    \
    X(PyErr_Clear) X(PyObject_Str) X(PyUnicode_AsUTF8)

#define DECLARE(name) static __typeof__(&name) p_##name;
PY_FUNCS(DECLARE)

static int py_state;        /* 0: not tried yet, 1: ready, -1: failed (reported once) */
static PyObject *decode_fn; /* cached tezip_hpc.archive.h5filter.plugin_decode */

/* Resolve every function; returns NULL on success, else what is missing. */
static const char *resolve_python(void)
{
    void *lib = RTLD_DEFAULT; /* a Python process (h5py) already has the symbols */
    if (!dlsym(lib, "Py_IsInitialized")) {
        lib = dlopen(TEZIP_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL);
        if (!lib)
            return dlerror();
    }
#define RESOLVE(name)                                                                          \
    if (!(p_##name = (__typeof__(p_##name))dlsym(lib, #name)))                                 \
        return "missing symbol " #name;
    PY_FUNCS(RESOLVE)
    return NULL;
}

/* Make sure a Python interpreter runs (starting the venv's one if needed), GIL released. */
static int ensure_python(void)
{
    const char *err;
    if (py_state)
        return py_state > 0;
    py_state = -1;
    if ((err = resolve_python())) {
        fprintf(stderr, MSG "cannot load Python from %s: %s\n", TEZIP_LIBPYTHON, err);
        return 0;
    }
    if (!p_Py_IsInitialized()) {
        PyConfig config;
        PyStatus status;
        /* a C host (h5dump): tezip_hpc must not import h5py, whose libhdf5 is not the host's */
        setenv("TEZIP_PLUGIN_HOST", "1", 1);
        p_PyConfig_InitPythonConfig(&config); /* honours PYTHONPATH & co. (use_environment) */
        config.install_signal_handlers = 0;   /* leave the host program's signals alone */
        status = p_PyConfig_SetBytesString(&config, &config.program_name, TEZIP_PYEXE);
        if (!p_PyStatus_Exception(status))
            status = p_PyConfig_SetBytesString(&config, &config.executable, TEZIP_PYEXE);
        if (!p_PyStatus_Exception(status))
            status = p_Py_InitializeFromConfig(&config);
        p_PyConfig_Clear(&config);
        if (p_PyStatus_Exception(status)) {
            fprintf(stderr, MSG "cannot initialise Python %s: %s\n", TEZIP_PYEXE,
                    status.err_msg ? status.err_msg : "unknown error");
            return 0;
        }
        p_PyEval_SaveThread(); /* every call below takes the GIL with PyGILState_Ensure */
    }
    py_state = 1;
    return 1;
}

/* Report the pending Python exception as one line "<Type>: <first line of message>". */
static void report_exception(void)
{
    PyObject *type = NULL, *value = NULL, *tb = NULL, *name = NULL, *str = NULL;
    const char *tname = NULL, *text = NULL;
    int n;
    p_PyErr_Fetch(&type, &value, &tb);
    if (type) {
        p_PyErr_NormalizeException(&type, &value, &tb);
        if ((name = p_PyObject_GetAttrString(type, "__name__")))
            tname = p_PyUnicode_AsUTF8(name);
        if (value && (str = p_PyObject_Str(value)))
            text = p_PyUnicode_AsUTF8(str);
        p_PyErr_Clear(); /* anything raised while formatting */
    }
    if (!tname)
        tname = "Exception";
    if (!text)
        text = "";
    n = (int)strcspn(text, "\r\n");
    fprintf(stderr, MSG "%s%s%.*s\n", tname, n ? ": " : "", n, text);
    p_Py_DecRef(str);
    p_Py_DecRef(name);
    p_Py_DecRef(tb);
    p_Py_DecRef(value);
    p_Py_DecRef(type);
}

static size_t tezip_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                           size_t nbytes, size_t *buf_size, void **buf)
{
    PyGILState_STATE gil;
    PyObject *mod, *cd = NULL, *payload = NULL, *result = NULL;
    unsigned char *cdb;
    const char *fail = NULL; /* a failure that is not a Python exception */
    char *data;
    Py_ssize_t len;
    size_t i, out = 0;

    if (!(flags & H5Z_FLAG_REVERSE)) {
        fprintf(stderr, MSG "writing through the plugin is not supported; "
                            "write archives with tezip-hpc compress\n");
        return 0;
    }
    if (!ensure_python())
        return 0;
    gil = p_PyGILState_Ensure();
    if (!decode_fn && (mod = p_PyImport_ImportModule(TEZIP_MODULE))) {
        decode_fn = p_PyObject_GetAttrString(mod, TEZIP_FUNCTION);
        p_Py_DecRef(mod);
    }
    if (decode_fn) {
        if ((cdb = malloc(4 * cd_nelmts + 1))) {
            for (i = 0; i < cd_nelmts; i++) {
                cdb[4 * i] = (unsigned char)(cd_values[i] & 0xffu);
                cdb[4 * i + 1] = (unsigned char)((cd_values[i] >> 8) & 0xffu);
                cdb[4 * i + 2] = (unsigned char)((cd_values[i] >> 16) & 0xffu);
                cdb[4 * i + 3] = (unsigned char)((cd_values[i] >> 24) & 0xffu);
            }
            cd = p_PyBytes_FromStringAndSize((const char *)cdb, (Py_ssize_t)(4 * cd_nelmts));
            free(cdb);
        } else
            fail = "out of memory";
        if (cd && (payload = p_PyBytes_FromStringAndSize((const char *)*buf, (Py_ssize_t)nbytes)))
            result = p_PyObject_CallFunctionObjArgs(decode_fn, cd, payload, NULL);
        if (result && p_PyBytes_AsStringAndSize(result, &data, &len) == 0) {
            void *copy = len > 0 ? malloc((size_t)len) : NULL;
            if (len <= 0)
                fail = TEZIP_FUNCTION " returned no data";
            else if (!copy)
                fail = "out of memory";
            else {
                memcpy(copy, data, (size_t)len);
                free(*buf); /* HDF5 1.10 filter buffers are plain malloc/free */
                *buf = copy;
                *buf_size = (size_t)len;
                out = (size_t)len;
            }
        }
    }
    if (!out) {
        if (fail)
            fprintf(stderr, MSG "%s\n", fail);
        else
            report_exception();
    }
    p_Py_DecRef(result);
    p_Py_DecRef(payload);
    p_Py_DecRef(cd);
    p_PyGILState_Release(gil);
    return out;
}

static const H5Z_class2_t tezip_class = {
    H5Z_CLASS_T_VERS,                                     /* version of this struct */
    (H5Z_filter_t)TEZIP_FILTER_ID,                        /* filter id */
    0,                                                    /* encoder_present */
    1,                                                    /* decoder_present */
    "tezip_hpc (decode via the tezip_hpc Python package)", /* name */
    NULL,                                                 /* can_apply */
    NULL,                                                 /* set_local */
    tezip_filter,                                         /* filter */
};

H5PL_type_t H5PLget_plugin_type(void) { return H5PL_TYPE_FILTER; }
const void *H5PLget_plugin_info(void) { return &tezip_class; }
