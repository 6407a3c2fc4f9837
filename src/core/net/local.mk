# build rules for src/core/net (included from Makefile.am)
