"""Multi-process start-up: JAX's distributed runtime, one process per host, before any JAX backend use.

``cnnlab train <task>`` takes ``--coordinator-address HOST:PORT --num-processes N --process-id I`` (the
arguments of ``jax.distributed.initialize``; any left out are detected by JAX from the cluster). With none
given, the runtime is started only when a cluster environment that JAX detects is present and says there is
more than one process:

- SLURM: ``SLURM_JOB_ID`` and ``SLURM_NTASKS`` > 1 (``srun``);
- Open MPI: ``OMPI_MCA_orte_hnp_uri`` and ``OMPI_COMM_WORLD_SIZE`` > 1 (``mpirun``);
- Kubernetes: ``KUBERNETES_SERVICE_HOST`` and ``JOB_COMPLETION_INDEX`` (an indexed Job; JAX reads the rest
  from the Kubernetes API, which needs the ``kubernetes`` package);
- Cloud TPU: ``TPU_WORKER_HOSTNAMES`` naming more than one worker (GKE); on TPU VMs without it pass
  ``--num-processes`` (JAX reads the rest from the TPU metadata).

Otherwise nothing happens: one process, its local devices. With several processes, `cnnlab train` prints its
reports from process 0 only (`quiet_other_processes`). See docs/distributed.md.
"""

import os
import sys

import jax

from cnnlab.errors import CnnlabError


def add_arguments(parser) -> None:
    """The three start-up flags of every ``cnnlab train`` command."""
    group = parser.add_argument_group("multi-process training (docs/distributed.md)")
    group.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                       help="address of process 0's coordinator, the same on every process")
    group.add_argument("--num-processes", type=int, default=None, metavar="N", help="number of processes")
    group.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, 0 .. N-1")


def cluster_environment() -> str | None:
    """The multi-process cluster environment JAX would detect here (see the module docstring), or None."""
    env = os.environ
    if "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return "SLURM"
    if "OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return "Open MPI"
    if "KUBERNETES_SERVICE_HOST" in env and "JOB_COMPLETION_INDEX" in env:
        return "Kubernetes"
    if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
        return "Cloud TPU"
    return None


def initialize(coordinator_address=None, num_processes=None, process_id=None,
               heartbeat_timeout_seconds: int | None = None) -> bool:
    """Start JAX's distributed runtime from the given arguments or a detected cluster; True if started.

    Must run before anything touches a JAX backend (``jax.devices()``, arrays, ``jit``). A process whose peer
    dies is aborted by the runtime once the peer has missed its heartbeats for ``heartbeat_timeout_seconds``
    (JAX's default, 100 s, if None)."""
    given = {k: v for k, v in (("coordinator_address", coordinator_address), ("num_processes", num_processes),
                               ("process_id", process_id)) if v is not None}
    if not given and cluster_environment() is None:
        return False
    if num_processes is not None and num_processes < 1:
        raise CnnlabError(f"--num-processes must be at least 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise CnnlabError(f"--process-id must be in 0 .. {num_processes - 1}, got {process_id}")
    if num_processes == 1 and not coordinator_address:
        return False
    try:
        timeout = {} if heartbeat_timeout_seconds is None else {"heartbeat_timeout_seconds": heartbeat_timeout_seconds}
        jax.distributed.initialize(**given, **timeout)
    except (RuntimeError, ValueError) as e:
        settings = ", ".join(f"{k}={v}" for k, v in given.items()) or f"{cluster_environment()} detection"
        raise CnnlabError(f"could not start the distributed runtime ({settings}): {e}; every process needs the "
                          "same --coordinator-address and --num-processes and its own --process-id") from e
    return True


def quiet_other_processes() -> None:
    """Process 0 prints the run's reports; the others' standard output is discarded (their errors and
    warnings still reach standard error)."""
    if jax.process_index() > 0:
        sys.stdout = open(os.devnull, "w")


def initialize_from_args(args) -> bool:
    return initialize(getattr(args, "coordinator_address", None), getattr(args, "num_processes", None),
                      getattr(args, "process_id", None))
