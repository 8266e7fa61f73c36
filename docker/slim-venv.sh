#!/bin/sh
# Drop from a venv what nothing imports at run time: packages' own test suites, C/Cython
# sources and headers, static libraries. Usage: slim-venv.sh <venv>
set -eu
SITE=$(echo "$1"/lib/python3*/site-packages)
find "$SITE" -depth -type d \( -name tests -o -name testing_data \) -path '*/site-packages/*/*' \
  -exec rm -rf {} +
find "$SITE" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.h' \
  -o -name '*.hpp' -o -name '*.c' -o -name '*.cc' -o -name '*.cpp' -o -name '*.a' \) -delete
rm -rf "$SITE"/pyarrow/include "$SITE"/pyarrow/src "$SITE"/numpy/_core/include
