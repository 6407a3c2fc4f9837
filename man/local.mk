# build rules for man (included from Makefile.am)
