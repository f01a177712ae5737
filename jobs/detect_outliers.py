"""spark-submit entry point of the `detect_outliers` job.

    spark-submit jobs/detect_outliers.py --config conf/cluster.yaml [--set key=value ...] [--debug]

The work is done by `ml_engine`; this file only hands over the arguments, exactly as
`ml-engine run detect_outliers` does (see ml_engine/cli.py).
"""

import sys

from ml_engine.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("detect_outliers"))
