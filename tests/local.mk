# Tests of the command layer, configuration and flags (included from Makefile.am).
# UNIT_TESTS lists the C unit tests that the sanitizer build runs.
UNIT_TESTS =
