# build rules for src/core/xfer (included from Makefile.am)
