"""`python -m mmspec.train._torchrun ARGS`: torchrun, but a failed worker ends it with that worker's exit code
(2 for a usage error, 1 otherwise) instead of a launcher traceback; the worker has printed its one-line error."""

from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main

if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ChildFailedError as e:
        _, failure = e.get_first_failure()
        sys.exit(failure.exitcode if failure.exitcode > 0 else 1)
