/*
 * radostdb class: the record codec (radostdb/_native/codec.h, the format;
 * codec.c, its implementation), compiled into the class from the very
 * source the client's CFFI module is built from, so that client and OSD
 * cannot disagree on a key, a record or a page.
 */
#include "codec.c"
