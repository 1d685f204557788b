"""Ray job entrypoint for a sweep: ``python -m workflows.tune --config ... --space tune_spaces/fusion.yaml``."""

import sys

from llm_emf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
