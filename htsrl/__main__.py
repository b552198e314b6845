import sys

from htsrl.cli import main

sys.exit(main())
