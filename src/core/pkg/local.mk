# build rules for src/core/pkg (included from Makefile.am)
