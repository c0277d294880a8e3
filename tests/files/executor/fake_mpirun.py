"""Stand-in for ``srun -n N`` / ``mpirun -np N`` in the tests (PyPI's GPAW has no MPI).

Usage: ``python fake_mpirun.py -n N [--hang] COMMAND...``. Appends one JSON line
(rank count, command, its own pid) to ``$FAKE_MPIRUN_RECORD``, then runs COMMAND
as its single "rank" in a child process and exits with its code. With
``--hang`` it starts a rank that sleeps instead (to test the time budget) and
records that rank's pid too; with ``--stubborn`` as well, that rank ignores SIGTERM
(as a rank stuck in a collective can), so only SIGKILL stops it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

args = sys.argv[1:]
ranks, hang, stubborn = None, False, False
while args and args[0].startswith("-"):
    if args[0] in ("-n", "-np"):
        ranks, args = int(args[1]), args[2:]
    elif args[0] == "--hang":
        hang, args = True, args[1:]
    elif args[0] == "--stubborn":
        stubborn, args = True, args[1:]
    else:
        break
sleeper = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
command = [sys.executable, "-c", sleeper if stubborn else "import time; time.sleep(600)"] if hang else args
child = subprocess.Popen(command)
record = os.environ.get("FAKE_MPIRUN_RECORD")
if record:
    entry = {"ranks": ranks, "command": args, "pid": os.getpid(), "rank_pid": child.pid}
    with Path(record).open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
sys.exit(child.wait())
