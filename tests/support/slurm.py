"""A real one-node Slurm cluster on this machine for the tests: Debian's munge, slurmctld and slurmd (Slurm 22.05),
started with a minimal slurm.conf in a temporary folder and stopped by their pids afterwards.

Simpler than a site's cluster (the README's test section says so): one node that is also the controller, every
daemon and job as root, no accounting (job states come from squeue and the jobs' own manifests), and the project
folder is the "shared file system" because the node is this machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
# Debian puts the daemons in /usr/sbin, which a non-login root shell's PATH may lack.
SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def tool(name: str) -> str:
    """The full path of a Slurm or munge program (the name itself when it is nowhere: the call then says so)."""
    return shutil.which(name, path=SEARCH) or name


def available() -> str | None:
    """None when the packages are installed, else what is missing."""
    missing = [d for d in (*DAEMONS, "sbatch", "squeue", "scancel") if shutil.which(d, path=SEARCH) is None]
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root"
    return f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)" if missing else None


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 512
    return 1024


def _config(folder: Path) -> str:
    cpus = os.cpu_count() or 1
    return f"""ClusterName=offline-speech-test
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
ReturnToService=2
MpiDefault=none
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=2
KillWait=2
NodeName=localhost CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """The running cluster: `env` is what a client (sbatch, squeue, run-pipeline --slurm) needs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}

    def squeue(self, job_id: str) -> list[str]:
        """`<array task> <state>` lines of a job still known to the controller."""
        proc = subprocess.run(
            ["squeue", "-h", "-r", "-j", job_id, "-o", "%K %T"],
            capture_output=True,
            text=True,
            env=os.environ | self.env,
        )
        return proc.stdout.split("\n")[:-1] if proc.returncode == 0 else []

    def wait(self, job_id: str, timeout: float = 600) -> None:
        """Until no task of the job is pending or running."""
        deadline = time.monotonic() + timeout
        while self.squeue(job_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"slurm job {job_id} still queued after {timeout} s: {self.squeue(job_id)}")
            time.sleep(0.5)


def _start_munge(folder: Path) -> bool:
    """Start munged unless one answers already (the machine's own): whether this started it."""
    run = Path("/run/munge")
    run.mkdir(exist_ok=True)
    shutil.chown(run, "munge", "munge")
    if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return False
    subprocess.run([tool("runuser"), "-u", "munge", "--", tool("munged"), "--force"], check=True)
    deadline = time.monotonic() + 10
    while subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("munged did not start")
        time.sleep(0.1)
    return True


def _wait_idle(cluster: Cluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=os.environ | cluster.env)
        if proc.stdout.strip() in ("idle", "mix"):
            return
        if time.monotonic() > deadline:
            log = (cluster.folder / "slurmd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the test node did not come up ({proc.stdout.strip()!r}): {log}")
        time.sleep(0.3)


def _stop(folder: Path, munge: bool) -> None:
    pid_files = [folder / f"{name}.pid" for name in ("slurmd", "slurmctld")]
    for pid_file in pid_files + ([Path("/run/munge/munged.pid")] if munge else []):
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="testslurm-"))
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    (folder / "slurm.conf").write_text(_config(folder))
    c = Cluster(folder)
    munge = False
    try:
        munge = _start_munge(folder)
        subprocess.run([tool("slurmctld"), "-f", str(c.conf)], check=True)
        subprocess.run([tool("slurmd"), "-f", str(c.conf)], check=True)
        _wait_idle(c)
        yield c
    finally:
        _stop(folder, munge)
        shutil.rmtree(folder, ignore_errors=True)
