"""FX optimisation passes (stage 4): GraphModule in, same GraphModule rewritten in place.

`DEFAULT_PIPELINE` is the one ordered tuple of default pass classes; `run_default_pipeline`
instantiates them fresh (passes carry per-call counters) and runs them once through a PassManager.
Adding a pass: one module, one test file, one line here. Invariants every pass keeps: README.md.
"""

from torch.fx import GraphModule

from mmspec.passes._infra import (
    Pass,
    PassError,
    PassManager,
    PassRecord,
    PassResult,
    PostconditionError,
    PreconditionError,
)
from mmspec.passes.eliminate_dead_code import EliminateDeadCode
from mmspec.passes.fold_batchnorm import FoldBatchNorm
from mmspec.passes.remove_dropout import RemoveDropout

__all__ = [
    "DEFAULT_PIPELINE",
    "EliminateDeadCode",
    "FoldBatchNorm",
    "Pass",
    "PassError",
    "PassManager",
    "PassRecord",
    "PassResult",
    "PostconditionError",
    "PreconditionError",
    "RemoveDropout",
    "run_default_pipeline",
]

DEFAULT_PIPELINE: tuple[type[Pass], ...] = (RemoveDropout, FoldBatchNorm, EliminateDeadCode)


def run_default_pipeline(gm: GraphModule) -> tuple[GraphModule, list[PassRecord]]:
    """Run DEFAULT_PIPELINE on eval-mode `gm` in place; return it and one PassRecord per pass."""
    return PassManager([cls() for cls in DEFAULT_PIPELINE])(gm)
