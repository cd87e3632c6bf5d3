#!/usr/bin/env python
"""Write a mock mosaic multi-omic dataset (thin wrapper around remadom.data.mock.main)."""

import sys

from remadom.data.mock import main

if __name__ == "__main__":
    sys.exit(main())
