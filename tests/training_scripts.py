"""Entry scripts for training subprocesses: plain, and one that dies mid-checkpoint."""

#: ``python -c PLAIN train ...`` runs the CLI as ``mhckit`` would.
PLAIN = "import sys; from mhckit.cli import main; sys.exit(main(sys.argv[1:]))"

#: The CLI, but the process SIGKILLs itself in the middle of writing its second checkpoint
#: (a torn file: the previous checkpoint must survive). Only saves to files count:
#: ``all_gather_object`` pickles through ``torch.save`` into a ``BytesIO`` as well.
KILL_ON_SECOND_SAVE = """
import io, os, signal, sys, torch
save, calls = torch.save, []
def killing_save(obj, f, *args, **kwargs):
    if not isinstance(f, io.BytesIO):
        calls.append(1)
    if len(calls) == 2:
        f.write(b"PK\\\\x03\\\\x04torn")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, f, *args, **kwargs)
torch.save = killing_save
from mhckit.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: The CLI, then every rank saves its ``ManifoldParameter`` s (the ones FSDP keeps whole) to
#: ``OUT.rank<R>.pt`` next to the run directory ``OUT``.
SAVE_REPLICATED = """
import sys, geoopt, torch
import mhckit.cli.train as command
trained = command.train
def train(*args, **kwargs):
    result = trained(*args, **kwargs)
    whole = {name: p.detach().clone() for name, p in result.model.named_parameters()
             if isinstance(p, geoopt.ManifoldParameter)}
    torch.save(whole, result.out_dir.parent / f"{result.out_dir.name}.rank{result.rank}.pt")
    return result
command.train = train
from mhckit.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: The CLI, but rank 0's checkpoint write is refused (as for a non-finite weight): every rank
#: must stop, not wait for rank 0 in the next all-reduce.
REFUSE_SAVE_ON_RANK_0 = """
import os, sys
import mhckit.models.training as training
from mhckit.models.checkpoint import CheckpointError
def refusing_save(path, **kwargs):
    raise CheckpointError(path, "not written: model.lm_head.weight holds NaN or inf (injected)")
if os.environ.get("RANK") == "0":
    training.save_checkpoint = refusing_save
from mhckit.cli import main
sys.exit(main(sys.argv[1:]))
"""
