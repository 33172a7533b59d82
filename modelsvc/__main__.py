import sys

from modelsvc.cli import main

sys.exit(main())
