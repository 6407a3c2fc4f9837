# build rules for guest (included from Makefile.am)
