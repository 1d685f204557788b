"""Ray job entrypoint for the whole pipeline.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python -m workflows.pipeline --config configs/demo.yaml pipeline.storage=s3://bucket/llm-emf

Same arguments as ``llm-emf run``: a config file and dotted overrides. Inside a Ray job it joins the
job's cluster; each stage writes content-addressed outputs under pipeline.storage, so a resubmitted job
continues where the last one stopped.
"""

import sys

from llm_emf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
