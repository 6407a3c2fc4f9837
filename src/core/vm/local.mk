# build rules for src/core/vm (included from Makefile.am)
