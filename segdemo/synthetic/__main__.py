import sys

from segdemo.synthetic.cli import main

sys.exit(main())
