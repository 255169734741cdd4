/* Partial JPEG decoding: one rectangle of a JPEG at a DCT scale, through libjpeg(-turbo).
 *
 * Rows above the rectangle are skipped (jpeg_skip_scanlines: entropy-decoded, no IDCT, no colour
 * conversion), columns outside it are cropped (jpeg_crop_scanline: no IDCT for them) and decoding stops at
 * its last row, so a crop that looks at a band of a panorama pays for little more than that band.
 * Settings are Pillow's (`Image.draft`): integer DCT, fancy upsampling, RGB output, so the pixels match
 * Pillow's decode of the same scale. The GIL is released while libjpeg runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated; /* libjpeg met the end of the data before the image ended */
} ErrorManager;

static void on_error(j_common_ptr cinfo) {
    ErrorManager *err = (ErrorManager *)cinfo->err;
    longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    ErrorManager *err = (ErrorManager *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        err->truncated = 1;
    }
}

static PyObject *UnsupportedError;

PyDoc_STRVAR(decode_region_doc,
"decode_region(data, scale, x0, x1, y0, y1) -> (pixels, x, y, width, height, full_width, full_height)\n\n"
"Decode rows y0:y1 and columns x0:x1 (in pixels of the image at 1/scale) of a JPEG as RGB. The columns\n"
"widen to whole iMCUs: the rectangle returned starts at column x, row y (== y0) and is width x height\n"
"pixels; `pixels` holds height * width * 3 bytes. full_width x full_height is the image at that scale.\n\n"
"Raises OSError for data libjpeg cannot decode or that ends early, and UnsupportedError for a colour\n"
"space it cannot turn into RGB (CMYK, YCCK).");

static PyObject *decode_region(PyObject *self, PyObject *args) {
    Py_buffer data;
    int scale, x0, x1, y0, y1;
    if (!PyArg_ParseTuple(args, "y*iiiii", &data, &scale, &x0, &x1, &y0, &y1)) {
        return NULL;
    }
    if (scale != 1 && scale != 2 && scale != 4 && scale != 8) {
        PyBuffer_Release(&data);
        PyErr_Format(PyExc_ValueError, "scale must be 1, 2, 4 or 8, got %d", scale);
        return NULL;
    }
    struct jpeg_decompress_struct cinfo;
    ErrorManager err;
    memset(&cinfo, 0, sizeof(cinfo));
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    err.truncated = 0;

    PyObject *pixels = NULL;
    volatile int unsupported = 0;
    volatile JDIMENSION out_x = 0, out_w = 0, out_h = 0, full_w = 0, full_h = 0, first = 0;
    char message[JMSG_LENGTH_MAX] = "";
    int failed = 0;

    jpeg_create_decompress(&cinfo);
    Py_BEGIN_ALLOW_THREADS
    if (setjmp(err.jump)) {
        (*cinfo.err->format_message)((j_common_ptr)&cinfo, message);
        failed = 1;
    } else {
        jpeg_mem_src(&cinfo, (const unsigned char *)data.buf, (unsigned long)data.len);
        jpeg_read_header(&cinfo, TRUE);
        if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
            unsupported = 1;
        } else {
            cinfo.scale_num = 1;
            cinfo.scale_denom = (unsigned int)scale;
            cinfo.out_color_space = JCS_RGB;
            jpeg_start_decompress(&cinfo);
            full_w = cinfo.output_width;
            full_h = cinfo.output_height;
            JDIMENSION left = (JDIMENSION)(x0 < 0 ? 0 : x0), right = (JDIMENSION)(x1 < 0 ? 0 : x1);
            JDIMENSION top = (JDIMENSION)(y0 < 0 ? 0 : y0), bottom = (JDIMENSION)(y1 < 0 ? 0 : y1);
            if (right > full_w) right = full_w;
            if (bottom > full_h) bottom = full_h;
            if (left >= right || top >= bottom) {
                left = right = top = bottom = 0;
            }
            JDIMENSION xoff = left, width = right - left;
            if (width > 0 && width < full_w) {
                jpeg_crop_scanline(&cinfo, &xoff, &width);
            }
            out_x = xoff;
            out_w = cinfo.output_width;
            first = top;
            out_h = bottom - top;
            if (top > 0) {
                jpeg_skip_scanlines(&cinfo, top);
            }
        }
    }
    Py_END_ALLOW_THREADS

    if (!failed && !unsupported) {
        pixels = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)out_h * out_w * 3);
        if (pixels != NULL) {
            unsigned char *base = (unsigned char *)PyBytes_AS_STRING(pixels);
            Py_BEGIN_ALLOW_THREADS
            if (setjmp(err.jump)) {
                (*cinfo.err->format_message)((j_common_ptr)&cinfo, message);
                failed = 1;
            } else {
                JDIMENSION done = 0;
                while (done < out_h) {
                    JSAMPROW row = base + (size_t)done * out_w * 3;
                    JDIMENSION got = jpeg_read_scanlines(&cinfo, &row, 1);
                    if (got == 0) break;
                    done += got;
                }
                if (done < out_h || err.truncated) {
                    strcpy(message, "image file is truncated");
                    failed = 1;
                }
            }
            Py_END_ALLOW_THREADS
        }
    }
    jpeg_destroy_decompress(&cinfo);
    PyBuffer_Release(&data);

    if (failed) {
        Py_XDECREF(pixels);
        PyErr_Format(PyExc_OSError, "cannot decode JPEG: %s", message);
        return NULL;
    }
    if (unsupported) {
        PyErr_SetString(UnsupportedError, "JPEG colour space is CMYK/YCCK");
        return NULL;
    }
    if (pixels == NULL) {
        return NULL;
    }
    return Py_BuildValue("(NIIIIII)", pixels, (unsigned int)out_x, (unsigned int)first, (unsigned int)out_w,
                         (unsigned int)out_h, (unsigned int)full_w, (unsigned int)full_h);
}

static PyMethodDef methods[] = {
    {"decode_region", decode_region, METH_VARARGS, decode_region_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegregion",
    "Partial JPEG decoding (one rectangle at a DCT scale) through libjpeg-turbo.", -1, methods,
};

PyMODINIT_FUNC PyInit__jpegregion(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    UnsupportedError = PyErr_NewException("unigeo._jpegregion.UnsupportedError", PyExc_ValueError, NULL);
    if (UnsupportedError == NULL || PyModule_AddObject(m, "UnsupportedError", UnsupportedError) < 0) {
        Py_XDECREF(UnsupportedError);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "JPEG_LIB_VERSION", JPEG_LIB_VERSION);
    return m;
}
