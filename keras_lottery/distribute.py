"""Distribution: train on one device, several GPUs, several machines or a TPU.

The recipe's ``distribute`` section (or ``--strategy``) names a ``tf.distribute``
strategy; the model is built and compiled inside its scope, and Keras splits each
global batch (``training.batch_size``) among the replicas. Masks, rewound weights and
optimizer resets are assigned from outside the replica context, which writes every
replica. Pruning reads the weights once, as numpy on the host.

On Keras 3's JAX backend there is no ``tf.distribute``: ``mirrored`` is
``keras.distribution.DataParallel`` over the local devices (:class:`JaxDataParallel`,
which gives the rest of the package what it asks of a strategy), set for the process
before the model is built, so that every variable is replicated on each device and each
batch split among them. ``multi_worker`` runs on tf_keras only: Keras 3's ``fit`` fails
under MultiWorkerMirroredStrategy (keras-team/keras#20585).

In multi-worker runs every worker trains in lockstep (all of them must run the same
collective ops, saving included), but only the chief writes the run directory; the
others write to a scratch directory beside it (``<run>.workertemp_<task id>``), as
TensorFlow's multi-worker guide recommends. The scratch directory is kept so that a
rerun resumes on every worker at the same round.
"""

import contextlib
import json
import os
import zlib
from pathlib import Path

from keras_lottery.backend import BACKEND, LEGACY, keras, tf
from keras_lottery.config.recipe import STRATEGIES
from keras_lottery.errors import UsageError


class DistributeError(UsageError):
    """A strategy that cannot be set up; the message says what to change."""


def create(config):
    """The strategy the recipe's ``distribute`` section names.

    Call it before any other TensorFlow op: MultiWorkerMirroredStrategy configures the
    collective ops at program start and cannot be created afterwards; and on JAX before
    the model is built, whose variables the distribution places.
    """
    if BACKEND == "jax":
        return jax_data_parallel(config)
    if BACKEND == "torch" and config.strategy != "default":
        raise DistributeError(
            f"recipe key 'distribute.strategy': {config.strategy} spreads training with TensorFlow's strategies, "
            "which cannot run a torch model; use --strategy default on the torch backend (or --workers N for "
            "trainings side by side), or KERAS_BACKEND=tensorflow or jax to spread one training"
        )
    if config.strategy == "multi_worker" and not LEGACY:
        raise DistributeError(
            "recipe key 'distribute.strategy': multi_worker does not run on Keras 3, whose fit fails under "
            "MultiWorkerMirroredStrategy (keras-team/keras#20585); use --keras tf_keras for several machines, "
            "or --strategy mirrored for this machine's devices"
        )
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        return mirrored(config.devices)
    if config.strategy == "multi_worker":
        return multi_worker()
    if config.strategy == "tpu":
        return tpu(config.tpu)
    raise DistributeError(f"unknown strategy {config.strategy!r}; use one of {', '.join(STRATEGIES)}")


def local_devices():
    """All local GPUs, or every logical CPU when there is no GPU (KERAS_LOTTERY_CPU_DEVICES=N)."""
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in gpus or tf.config.list_logical_devices("CPU")]


def mirrored(devices=None):
    devices = list(devices) if devices else local_devices()
    known = {_device_key(device.name) for device in tf.config.list_logical_devices()}
    unknown = [device for device in devices if _device_key(device) not in known]
    if unknown:
        raise DistributeError(
            f"recipe key 'distribute.devices': {', '.join(unknown)} not found on this machine, which has "
            f"{', '.join(d.name for d in tf.config.list_logical_devices())}; set it to null to use all local GPUs"
        )
    return tf.distribute.MirroredStrategy(devices=devices)


def _device_key(name):
    """('GPU', 0) for '/gpu:0', 'GPU:0' or '/device:GPU:0'; None if ``name`` is not a device."""
    try:
        spec = tf.DeviceSpec.from_string(name if name.startswith("/") else "/" + name)
    except ValueError:
        return None
    return (spec.device_type or "").upper(), spec.device_index or 0


def multi_worker():
    """MultiWorkerMirroredStrategy with the cluster from TF_CONFIG (one worker without it)."""
    text = os.environ.get("TF_CONFIG")
    if text:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as err:
            raise DistributeError(f"TF_CONFIG is not valid JSON ({err.msg}); see README: several machines") from None
        if not isinstance(spec, dict) or "cluster" not in spec or "task" not in spec:
            raise DistributeError(
                'TF_CONFIG must be {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                '"index": i}}; see README: several machines'
            )
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO  # RING on CPU, NCCL on GPU
    )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (ValueError, RuntimeError) as err:
        raise DistributeError(f"cannot start the multi-worker strategy: {_first_line(err)}; check TF_CONFIG") from None


def tpu(address=None):
    """TPUStrategy on the TPU at ``address`` (a name or grpc:// address; None: from the environment)."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as err:  # ValueError without an address, URLError for unknown names, ...
        raise DistributeError(
            f"no TPU reachable at {address or 'the default address'} ({_first_line(err)}); "
            "set distribute.tpu to the TPU's name or grpc:// address, or use another --strategy"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def per_replica_batch(batch_size, replicas):
    """The batch each replica trains on; refuse a global batch that does not split evenly."""
    if batch_size % replicas:
        lower = batch_size - batch_size % replicas or replicas
        raise DistributeError(
            f"recipe key 'training.batch_size': the global batch {batch_size} does not divide evenly among "
            f"{replicas} replicas; use a multiple of {replicas} such as {lower} or {lower + replicas}"
        )
    return batch_size // replicas


def task(strategy):
    """``(task_type, task_id)`` of this process in a cluster, ``(None, None)`` outside one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief_task(task_type, task_id, cluster=None):
    """The chief writes results: the 'chief' task, else worker 0, else the only process."""
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in (cluster or {})


def is_chief(strategy):
    task_type, task_id = task(strategy)
    cluster = strategy.cluster_resolver.cluster_spec().as_dict() if task_type is not None else None
    return is_chief_task(task_type, task_id, cluster)


def work_dir(run_dir, strategy):
    """Where this process writes: the run directory on the chief, a scratch directory on other workers."""
    run_dir = Path(run_dir)
    if is_chief(strategy):
        return run_dir
    _, task_id = task(strategy)
    return run_dir.parent / f"{run_dir.name}.workertemp_{task_id}"


def describe(strategy, config, batch_size):
    """One line: the strategy, its replicas, the batch split (refused if uneven), and this worker's role."""
    replicas = strategy.num_replicas_in_sync
    line = f"strategy: {config.strategy} with {replicas} replica{'s' if replicas > 1 else ''}"
    if isinstance(strategy, JaxDataParallel) and strategy.distribution is not None:
        line += f" (keras.distribution.DataParallel on {', '.join(strategy.device_names)})"
    line += f", global batch {batch_size} = {per_replica_batch(batch_size, replicas)} per replica"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        line += f" on {', '.join(strategy.extended.worker_devices)}"
    task_type, task_id = task(strategy)
    if task_type is not None:
        cluster = strategy.cluster_resolver.cluster_spec().as_dict()
        workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
        role = "chief, writes the run directory" if is_chief(strategy) else "not the chief, writes a scratch directory"
        line += f"; this is {task_type} {task_id} of {workers} ({role})"
    return line


def check_same_progress(strategy, rows):
    """Refuse to start when workers hold different finished rounds: they would wait on
    each other forever, since each trains only what its own directory lacks.

    ``rows`` are the result rows of this worker's finished variants.
    """
    if task(strategy)[0] is None:
        return
    finished = sorted([row["trial"], row["round"], row["variant"]] for row in rows)
    code = float(zlib.crc32(json.dumps(finished).encode()) % 2**20)
    codes = strategy.gather(strategy.run(lambda: tf.constant([code], tf.float64)), axis=0).numpy()
    if len(set(codes.tolist())) > 1:
        raise DistributeError(
            f"the workers' directories hold different finished rounds ({len(finished)} here); "
            "rerun every worker with the same run directory, or remove the workers' "
            "*.workertemp_* directories and the chief's run directory to start afresh"
        )


# ---- Keras 3 on JAX: keras.distribution --------------------------------------------------


class JaxDataParallel:
    """What the package asks of a strategy, on Keras 3's JAX backend: ``devices`` (JAX
    devices of this process) and, for ``mirrored``, the ``keras.distribution.DataParallel``
    over them, set as Keras's distribution (None for ``default``: one device). One
    process, which is the chief."""

    cluster_resolver = None  # not in a cluster: task() is (None, None)

    def __init__(self, devices, data_parallel):
        self.devices = list(devices)
        self.distribution = keras.distribution.DataParallel(devices=self.devices) if data_parallel else None
        keras.distribution.set_distribution(self.distribution)  # before the model's variables exist

    @property
    def num_replicas_in_sync(self):
        return len(self.devices)

    @property
    def device_names(self):
        return [f"{device.platform}:{device.id}" for device in self.devices]

    def scope(self):
        return contextlib.nullcontext()  # the distribution holds for the whole process


def jax_data_parallel(config):
    """The JAX stand-in for the strategy ``config`` names (see :class:`JaxDataParallel`)."""
    import jax

    if config.strategy in ("multi_worker", "tpu"):
        instead = ("use --strategy mirrored for this machine's devices, or --keras tf_keras for several machines"
                   if config.strategy == "multi_worker" else
                   "on a TPU VM use --strategy mirrored (DataParallel over its TPU cores), or KERAS_BACKEND=tensorflow")
        raise DistributeError(
            f"recipe key 'distribute.strategy': {config.strategy} is a tf.distribute strategy, not available on "
            f"the JAX backend; {instead}"
        )
    local = jax.local_devices()  # the accelerators, else the CPU devices (XLA_FLAGS splits the CPU)
    if config.strategy == "default":
        return JaxDataParallel(local[:1], data_parallel=False)
    if not config.devices:
        return JaxDataParallel(local, data_parallel=True)
    by_key = {(d.platform.upper(), d.id): d for d in jax.local_devices(backend="cpu")}
    by_key.update({(d.platform.upper(), d.id): d for d in local})
    unknown = [device for device in config.devices if _device_key(device) not in by_key]
    if unknown:
        raise DistributeError(
            f"recipe key 'distribute.devices': {', '.join(unknown)} not found on this machine, which has "
            f"{', '.join(f'{d.platform}:{d.id}' for d in by_key.values())}; set it to null to use all local devices"
        )
    return JaxDataParallel([by_key[_device_key(device)] for device in config.devices], data_parallel=True)
