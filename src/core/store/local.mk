# build rules for src/core/store (included from Makefile.am)
