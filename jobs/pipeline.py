"""spark-submit entry point of the `pipeline` job.

    spark-submit jobs/pipeline.py --config conf/cluster.yaml [--set key=value ...]

The work is done by `ml_engine`; this file only hands over the arguments (see ml_engine/jobs.py).
"""

import sys

from ml_engine.jobs import main

if __name__ == "__main__":
    sys.exit(main("pipeline"))
