import sys

from tuitune.cli.main import main

sys.exit(main())
