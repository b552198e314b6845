import sys

from htsrl.cli import main

if __name__ == "__main__":  # not when a spawned role process imports this module as __mp_main__
    sys.exit(main())
