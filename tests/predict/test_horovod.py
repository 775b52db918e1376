"""Real Horovod over MPI with TensorFlow 2.18 + Keras 3: allreduce and one
DistributedGradientTape step, after which every rank holds identical weights."""

import numpy as np
import pytest

pytestmark = pytest.mark.mpi(min_size=2)


def test_allreduce_sum_and_average(hvd):
    import tensorflow as tf

    from mpi4py import MPI

    assert hvd.size() == MPI.COMM_WORLD.size
    assert hvd.rank() == MPI.COMM_WORLD.rank
    assert hvd.mpi_enabled()
    x = tf.constant([float(hvd.rank() + 1), 2.0])
    total = hvd.allreduce(x, op=hvd.Sum).numpy()
    n = hvd.size()
    assert total.tolist() == [n * (n + 1) / 2, 2.0 * n]
    avg = hvd.allreduce(x, op=hvd.Average).numpy()
    np.testing.assert_allclose(avg, [(n + 1) / 2, 2.0])


def test_distributed_gradient_tape_step_keeps_ranks_identical(hvd):
    import keras
    import tensorflow as tf

    from mpi4py import MPI

    keras.utils.set_random_seed(1234 + hvd.rank())  # deliberately different initial weights per rank
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    opt = keras.optimizers.SGD(0.05 * hvd.size())  # Horovod: scale the learning rate by size
    opt.build(model.trainable_variables)
    # Horovod: broadcast initial state from rank 0 (Keras 3: raw tf.Variables).
    hvd.broadcast_variables([v.value for v in model.variables], root_rank=0)

    rng = np.random.default_rng(hvd.rank())  # each rank its own shard
    x = tf.constant(rng.normal(size=(16, 4)).astype("float32"))
    y = tf.reduce_sum(x, axis=1, keepdims=True)
    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(x, training=True) - y) ** 2)
    tape = hvd.DistributedGradientTape(tape)  # Horovod: average gradients over ranks
    grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
    opt.apply_gradients(zip(grads, model.trainable_variables))

    after = [v.numpy() for v in model.trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(after, before)), "the step changed nothing"
    flat = np.concatenate([a.ravel() for a in after])
    everyone = MPI.COMM_WORLD.allgather(flat.tobytes())
    assert all(buf == everyone[0] for buf in everyone), "ranks diverged after one step"
