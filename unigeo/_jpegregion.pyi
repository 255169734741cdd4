"""Partial JPEG decoding (one rectangle at a DCT scale) through libjpeg-turbo; see _jpegregion.c."""

JPEG_LIB_VERSION: int

class UnsupportedError(ValueError): ...

def decode_region(data: bytes, scale: int, x0: int, x1: int, y0: int, y1: int, /
                  ) -> tuple[bytes, int, int, int, int, int, int]: ...
