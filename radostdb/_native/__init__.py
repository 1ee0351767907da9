"""C implementation of the record codec (codec.h, codec.c), built by CFFI from build.py.

Import ``radostdb.codec``, not this package: it picks this extension when it
is built and falls back to pure Python otherwise.
"""
