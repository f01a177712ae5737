"""spark-submit entry point of the `vacuum` job.

    spark-submit jobs/vacuum.py --config conf/cluster.yaml [--set key=value ...] [--debug]

The work is done by `ml_engine`; this file only hands over the arguments, exactly as
`ml-engine run vacuum` does (see ml_engine/cli.py).
"""

import sys

from ml_engine.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("vacuum"))
