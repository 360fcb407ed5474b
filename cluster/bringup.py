"""Bringing a shardvec cluster up on Ray: an embedded local Ray, or an existing cluster."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from shardvec.cluster.logs import ray_init_options
from shardvec.contract.errors import FailedPrecondition
from shardvec.contract.private_files import private_dir
from shardvec.coordinator.replicas.ray_control import COORDINATOR_NAME, NAMESPACE
from shardvec.coordinator.server import coordinator_actor_class
from shardvec.shard.node_lock import default_lock_path

log = logging.getLogger(__name__)

LOCAL_IP = "127.0.0.1"

# Ray starts one idle worker process per CPU when the first driver connects, for tasks to
# come. shardvec's actors never take one (each replica asks for its own runtime_env), so on
# an embedded cluster they only cost start-up: 1.75 CPU-seconds of a 2-CPU bring-up's 8.4
# (a server and a 2 x 2 collection, 7.8 s -> 5.9 s to the collection created).
EMBEDDED_RAY_CONFIG: dict[str, Any] = {"prestart_worker_first_driver": False}


def connect_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    log_level: str | None = None,
    log_json: bool = False,
) -> bool:
    """Attach to Ray at `address` ("auto" for the local node's cluster), or start an embedded
    one bound to loopback. With `log_level`, this process prints its own log lines and those
    of every worker of the job (the coordinator, the replicas) on its stderr: plain text
    lines, or with `log_json` JSON lines with the `extra` fields (cluster/logs.py). Returns
    True when this call started Ray (and so owns it)."""
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = ray_init_options(log_level, log_json)
    if address:
        ray.init(address=address, namespace=NAMESPACE, **quiet)
        return False
    loopback_only()

    def bring_up() -> bool:
        try:
            ray.init(
                address="local",  # a new instance, even when `ray start` runs on this machine
                namespace=NAMESPACE,
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address=LOCAL_IP,
                _system_config=EMBEDDED_RAY_CONFIG,
                **quiet,
            )
        except BaseException:
            ray.shutdown()
            raise
        return True

    return _twice("the embedded Ray", bring_up)


T = TypeVar("T")


def _twice(what: str, bring_up: Callable[[], T]) -> T:
    """`bring_up()` (which shuts down what Ray knows of a try that fails), and once more if
    it fails. Ray gives a starting node's raylet a fixed 30 s (not a setting) to register with
    the GCS, which an overloaded machine has run past, for an embedded `shardvec up` and a
    simulated cluster alike. A node that failed so is not Ray's to shut down (its constructor
    raised), so the processes the try started (GCS, raylet, reaper) are killed here."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    try:
        return bring_up()
    except Exception as exc:
        left = [p for p in me.children(recursive=True) if p.pid not in before]
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(left, timeout=10)
        log.warning("%s failed to come up (%s); once more", what, exc)
    return bring_up()


def loopback_only() -> None:
    """An embedded cluster lives on this machine alone: keep every Ray address on loopback.

    Ray otherwise swaps 127.0.0.1 for the machine's routable address; this switch (inherited
    by every Ray process through the environment) is Ray's own single-machine mode.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def simulated_cluster(nodes: int, num_cpus: int = 1) -> Any:
    """A `ray.cluster_utils.Cluster` of `nodes` Ray nodes on this machine (loopback only, the
    embedded cluster's settings), each with `num_cpus`: multi-node tests and the scale-out
    benchmarks. The caller shuts it down; a bring-up that fails is tried once more
    (`_twice`)."""
    loopback_only()
    from ray.cluster_utils import Cluster

    head = {"num_cpus": num_cpus, "_system_config": EMBEDDED_RAY_CONFIG}

    def bring_up() -> Any:
        c = Cluster(initialize_head=True, head_node_args=head)
        try:
            for _ in range(nodes - 1):
                c.add_node(num_cpus=num_cpus)
            c.wait_for_nodes()
        except BaseException:
            c.shutdown()
            raise
        return c

    return _twice(f"a simulated cluster of {nodes} nodes", bring_up)


class ShardvecCluster:
    """A running coordinator actor (and, embedded, the Ray instance under it)."""

    def __init__(
        self,
        settings: dict[str, Any],
        *,
        ray_address: str | None = None,
        num_cpus: int | None = None,
        log_level: str | None = None,
        log_json: bool = False,
    ) -> None:
        self.settings = dict(settings)
        self.settings.setdefault("token", secrets.token_hex(16))
        self.settings["data_dir"] = str(Path(self.settings["data_dir"]).resolve())
        for key in ("tls_cert", "tls_key"):  # the coordinator actor may run in another cwd
            if self.settings.get(key):
                self.settings[key] = str(Path(self.settings[key]).resolve())
        private_dir(Path(self.settings["data_dir"]))
        self.owns_ray = connect_ray(ray_address, num_cpus=num_cpus, log_level=log_level,
                                    log_json=log_json)
        try:
            ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
        except ValueError:
            pass
        else:
            raise FailedPrecondition(
                f"a shardvec coordinator is already running in this Ray cluster "
                f"(actor {COORDINATOR_NAME!r} in namespace {NAMESPACE!r})"
            )
        start = time.perf_counter()
        self.coordinator = (
            coordinator_actor_class()
            .options(
                name=COORDINATOR_NAME,
                namespace=NAMESPACE,
                num_cpus=0,
                # beside the driver, whose node serves the public port; elsewhere if it is gone
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node_id=ray.get_runtime_context().get_node_id(), soft=True
                ),
            )
            .remote(self.settings)
        )
        self.address: str = ray.get(self.coordinator.ping.remote())
        log.info("coordinator up in %.1f s", time.perf_counter() - start)

    def status(self) -> list[dict[str, Any]]:
        return list(ray.get(self.coordinator.status.remote()))

    def scale_replicas(self, name: str, replicas: int, timeout: float | None = None) -> None:
        """Change collection `name` to `replicas` replicas per shard; returns when they serve."""
        ray.get(self.coordinator.scale_replicas.remote(name, replicas), timeout=timeout)

    def rebalance(self, name: str | None = None) -> list[dict[str, object]]:
        """Move replicas until the nodes hold about the same rows; returns the moves made."""
        return list(ray.get(self.coordinator.rebalance.remote(name)))

    def coordinator_pid(self) -> int:
        return int(ray.get(self.coordinator.pid.remote()))

    def fronts(self) -> list[dict[str, str]]:
        """The query fronts that answer: address and node id of each (front_port >= 0)."""
        return list(ray.get(self.coordinator.front_addresses.remote()))

    def wait_fronts(self, n: int, timeout: float = 120.0) -> list[dict[str, str]]:
        """Wait until `n` fronts answer; returns them."""
        end = time.monotonic() + timeout
        while True:
            got = self.fronts()
            if len(got) >= n or time.monotonic() > end:
                return got
            time.sleep(0.25)

    def coordinator_node_id(self) -> str:
        return str(ray.get(self.coordinator.node_id.remote()))

    def stop(self) -> None:
        """Checkpoint every replica, stop the coordinator, and end an embedded Ray."""
        try:
            ray.get(self.coordinator.shutdown.remote(), timeout=300)
        except Exception as exc:
            log.warning("coordinator shutdown: %s", exc)
        try:
            ray.kill(self.coordinator, no_restart=True)
        except Exception as exc:
            log.debug("kill coordinator: %s", exc)
        if self.owns_ray:
            try:
                nodes = [n["NodeID"] for n in ray.nodes()]
            except Exception as exc:
                log.debug("list nodes: %s", exc)
                nodes = []
            ray.shutdown()
            # The embedded nodes ended with Ray, and their ids never come back: nobody can
            # hold or open their search-lock files any more.
            for node in nodes:
                default_lock_path(node).unlink(missing_ok=True)

    def __enter__(self) -> ShardvecCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

