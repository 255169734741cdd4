"""The one native part: ``unigeo._jpegregion`` (partial JPEG decoding through the system's libjpeg-turbo).

Everything else is declared in pyproject.toml. The extension is optional: without a C compiler or the
libjpeg headers (Debian: ``libjpeg62-turbo-dev``) the install still succeeds and crops use the full
scaled decode (``unigeo.pipeline.crops.REGION_DECODE`` says which is in use).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("unigeo._jpegregion", sources=["unigeo/_jpegregion.c"], libraries=["jpeg"],
                             extra_compile_args=["-O2"], optional=True)])
