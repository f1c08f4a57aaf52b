"""Where a batch's videos run: threads on this machine, or Ray tasks on a local Ray instance or
a cluster. Both take an :class:`~rtseg.batch.inputs.Item` and give back its manifest line."""
from __future__ import annotations

import logging
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from functools import partial
from typing import Any, Callable

from rtseg.errors import RtsegError
from rtseg.fleet.inputs import Item
from rtseg.fleet.worker import BatchOptions, process_one

__all__ = ["LocalPool", "RayPool", "RAY_EXTRA", "TASK_CPUS"]

RAY_EXTRA = 'pip install "rtseg[ray]"'
# CPUs a Ray task asks for on a node without GPUs: one pipelined video keeps two cores busy
# (decode and encode beside the network), and two at once on two cores were no faster
# (benchmarks/results/batch.json).
TASK_CPUS = 2


class LocalPool:
    """``jobs`` videos at once, each in a thread of this process (each one pipelined in its own threads)."""

    def __init__(self, options: BatchOptions, *, jobs: int = 1, stop: threading.Event,
                 on_frame: Callable[[str, int], None] | None = None):
        self.options, self.stop, self.on_frame, self.slots = options, stop, on_frame, jobs
        self._executor = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="rtseg-batch")

    def submit(self, item: Item) -> Future:
        report = partial(self.on_frame, item.input) if self.on_frame is not None else None
        return self._executor.submit(process_one, item, self.options, on_frame=report, stop=self.stop)

    def wait(self, handles: list, timeout: float) -> list:
        return list(wait(handles, timeout=timeout, return_when=FIRST_COMPLETED).done)

    def result(self, handle: Future, item: Item) -> dict:
        return handle.result()

    def cancel(self, handles: list) -> None:
        self.stop.set()  # the running videos stop at their next frame, their temporaries removed

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class RayPool:
    """One Ray task per video: ``num_gpus=1`` where the cluster has GPUs (and ``device`` is not
    cpu), else ``cpus_per_task`` CPUs; a task whose worker dies is run again up to ``retries``
    times. ``cluster``: ``ray`` (``RAY_ADDRESS`` when set, else a local instance on 127.0.0.1
    with ``cpus`` CPUs) or ``ray://HOST:PORT``. Every node needs rtseg installed and the inputs
    and output folder under the same paths (a shared file system)."""

    def __init__(self, options: BatchOptions, cluster: str, *, cpus: int | None = None, cpus_per_task: float = 0,
                 retries: int = 3):
        try:
            import ray
        except ImportError:
            raise RtsegError(f"--cluster {cluster} needs Ray: {RAY_EXTRA}") from None
        self.ray, self.retries = ray, retries
        address = cluster if cluster.startswith("ray://") else os.environ.get("RAY_ADDRESS") or None
        quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        main = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main else None
        try:
            if address:
                ray.init(address=address, **quiet)
            else:  # a private instance on this machine, reachable from it only
                ray.init(address="local", num_cpus=cpus or os.cpu_count(), _node_ip_address="127.0.0.1",
                         include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RtsegError(f"--cluster {cluster}: cannot start or reach Ray ({' '.join(str(exc).split())[:200]})") from None
        if callable(sigterm):  # ray.init's own SIGTERM handler exits at once: keep the caller's (a clean stop)
            signal.signal(signal.SIGTERM, sigterm)
        total = ray.cluster_resources()
        gpu = total.get("GPU", 0) >= 1 and options.device.strip().lower() != "cpu"
        if gpu:  # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU: it is cuda (cuda:0) inside the task
            resources, task_options = {"num_gpus": 1, "num_cpus": 1}, _engine(options, device="cuda")
            self.slots = int(total["GPU"])
        else:
            share = min(cpus_per_task or TASK_CPUS, total.get("CPU", 1))
            resources = {"num_cpus": share}
            task_options = _engine(options, threads=options.spec.engine.threads or max(1, int(share)))  # not every core
            self.slots = max(1, int(total.get("CPU", 1) // share))
        self.options = task_options
        self._remote = ray.remote(process_one).options(max_retries=retries, retry_exceptions=False, **resources)

    def submit(self, item: Item) -> Any:
        return self._remote.remote(item, self.options)

    def wait(self, handles: list, timeout: float) -> list:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return ready

    def result(self, handle: Any, item: Item) -> dict:
        from rtseg.fleet.worker import one_line

        exceptions = self.ray.exceptions
        try:
            return self.ray.get(handle)
        except exceptions.TaskCancelledError:
            return {"input": item.input, "status": "interrupted"}
        except exceptions.RayError as exc:  # the worker died on every attempt, or the task could not run
            why = f"worker lost on all {self.retries + 1} attempts" if isinstance(exc, exceptions.WorkerCrashedError) \
                else one_line(exc)[:300]
            return {"input": item.input, "status": "failed", "frames": 0, "fps": 0.0, "wall_s": 0.0,
                    "output": item.output, "error": why}

    def cancel(self, handles: list) -> None:
        for handle in handles:  # a running task gets KeyboardInterrupt: it removes its temporaries
            self.ray.cancel(handle)

    def close(self) -> None:
        self.ray.shutdown()


def _engine(options: BatchOptions, **changes: Any) -> BatchOptions:
    """``options`` with its engine's ``changes`` (the device or threads a Ray task gets)."""
    spec = options.spec
    return replace(options, spec=replace(spec, engine=replace(spec.engine, **changes)))
