"""valgrind's memcheck as the tests run our daemons under it: any invalid
access, or a definite leak, makes the run exit 99. Leaks lws 4.1.6 makes
on its own are suppressed (tests/valgrind/lws.supp says which and why).
--vgdb=no: valgrind otherwise leaves debugger FIFOs in /tmp at every run
(and a process that drops privileges cannot remove them)."""

import shutil
from pathlib import Path

SUPPRESSIONS = Path(__file__).resolve().parents[1] / "valgrind" / "lws.supp"


def prefix(*extra, quiet=True):
    """The command line to put before a daemon's own."""
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is missing: make deps"
    return [valgrind, *(["--quiet"] if quiet else []), "--tool=memcheck", "--fair-sched=yes", "--error-exitcode=99",
            "--leak-check=full", "--errors-for-leak-kinds=definite", "--track-fds=no", "--vgdb=no",
            f"--suppressions={SUPPRESSIONS}", *extra]
