"""Test double for `python -m mpi4py -m tezip_hpc COMMAND ...` (see ./python).

It follows the CLI contract the job scripts rely on, quickly and without TensorFlow, so
that the scripts' own logic (launch, GPU pinning, partial outputs, signals, requeue and
resume) is tested under a real Slurm now:

  train TRAIN -o MODEL [--epochs N] [--resume]   rank 0 "trains" N epochs, checkpoints to
      MODEL.ckpt after each one and on SIGUSR1/SIGTERM (then exits 0); --resume
      continues from that checkpoint (exit 7 if there is none). MODEL records which epochs
      each run did. FAKE_TRAIN_BLOCK_AFTER=K: a run that did not resume waits for a signal
      after epoch K (so a test can interrupt it at a known point).
  compress INPUT.npy -o ARCHIVE ...               rank 0 stores the array (np.save format)
  info ARCHIVE                                    prints its shape; exit 5 if unreadable
  decompress ARCHIVE -o OUTPUT.npy [--frames A:B] rank 0 writes the frames back
  verify ARCHIVE REF --decoded OUT [--frames A:B]  OUT against REF under the bound $TEZIP_BOUND
FAKE_FAIL=COMMAND makes rank 0 write a partial output, then fail like the tool (one line, exit 3).
FAKE_HANG=COMMAND makes rank 0 write a partial output, say "fake: hanging", and wait for ever.
FAKE_CORRUPT=1 makes decompress add 10 to every value (an out-of-bound result).
Every rank appends one JSON line about itself (rank, GPUs it sees, ...) to $FAKE_RECORD.
Anything that is not `-m [mpi4py -m] tezip_hpc` runs with the real interpreter.
"""

import json
import os
import signal
import sys
import time

argv = sys.argv[1:]
if argv[:4] == ["-m", "mpi4py", "-m", "tezip_hpc"]:
    args = argv[4:]
elif argv[:2] == ["-m", "tezip_hpc"]:
    args = argv[2:]
else:
    os.execv(sys.executable, [sys.executable, *argv])

import numpy as np  # noqa: E402

if args[:1] == ["job-paths"]:  # naming rules are the real tool's, not the double's
    from tezip_hpc.cli import main

    sys.exit(main(args))

from tezip_hpc.launch import pin_gpu  # noqa: E402  (the real rule: one GPU per rank, by local rank)

pin_gpu()
env = os.environ
rank = int(env.get("OMPI_COMM_WORLD_RANK") or env.get("PMIX_RANK") or env.get("SLURM_PROCID") or 0)
size = int(env.get("OMPI_COMM_WORLD_SIZE") or env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1)
cmd = args[0] if args else ""


def record(**extra):
    if not env.get("FAKE_RECORD"):
        return
    line = {"cmd": cmd, "argv": args, "rank": rank, "size": size, "mpi4py": argv[:2] == ["-m", "mpi4py"],
            "cuda": env.get("CUDA_VISIBLE_DEVICES"),
            "omp": env.get("OMP_NUM_THREADS"), "container": env.get("FAKE_CONTAINER"),
            "mpirun": "OMPI_COMM_WORLD_RANK" in env, "restart": env.get("SLURM_RESTART_COUNT"),
            "host": os.uname().nodename, **extra}
    with open(env["FAKE_RECORD"], "a") as f:
        f.write(json.dumps(line) + "\n")


def fail(msg, code=3):
    print(f"tezip-hpc {cmd}: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default


def write_npy(path, arr):
    with open(path, "wb") as f:  # keep the exact name (np.save would append .npy)
        np.save(f, arr)


def read_npy(path):
    with open(path, "rb") as f:
        return np.load(f, allow_pickle=False)


record()
if rank != 0 and cmd != "train":
    sys.exit(0)

if cmd == "train":
    model = opt("-o")
    epochs = int(opt("--epochs", "3"))
    ckpt = model + ".ckpt"
    resume = "--resume" in args
    if rank != 0:  # wait for rank 0 to finish, or for the forwarded signal
        signal.signal(signal.SIGUSR1, lambda *a: sys.exit(0))
        while not os.path.exists(model):
            time.sleep(0.1)
        sys.exit(0)
    state = {"done": 0, "runs": []}
    if resume:
        if not os.path.exists(ckpt):
            fail(f"--resume: no checkpoint {ckpt}", 7)
        with open(ckpt) as f:
            state = json.load(f)
        print(f"fake train: resuming after epoch {state['done']}", flush=True)
    state["runs"].append([])

    def save():
        tmp = ckpt + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, ckpt)

    def on_signal(signum, _frame):
        save()
        print(f"fake train: caught signal {signum}, checkpoint at epoch {state['done']}", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    block_after = int(env.get("FAKE_TRAIN_BLOCK_AFTER", "0"))
    for epoch in range(state["done"], epochs):
        time.sleep(float(env.get("FAKE_EPOCH_SECONDS", "0.2")))
        state["done"] = epoch + 1
        state["runs"][-1].append(epoch)
        save()
        print(f"fake train: epoch {epoch + 1}/{epochs} done", flush=True)
        if not resume and block_after and state["done"] == block_after:
            print("fake train: waiting for a signal", flush=True)
            while True:
                time.sleep(0.1)
    with open(model, "w") as f:
        json.dump({"epochs": epochs, "runs": state["runs"]}, f)
    print(f"fake train: wrote {model}", flush=True)
elif cmd == "compress":
    src, out = args[1], opt("-o")
    if env.get("FAKE_FAIL") == "compress" or env.get("FAKE_HANG") == "compress":
        with open(out, "wb") as f:
            f.write(b"half an archive")
        if env.get("FAKE_HANG") == "compress":
            print("fake: hanging", flush=True)
            while True:
                time.sleep(0.1)
        fail("simulated failure while writing")
    write_npy(out, np.load(src))
    print(f"fake compress: {src} -> {out}", flush=True)
elif cmd == "info":
    try:
        arr = read_npy(args[1])
    except Exception as exc:  # noqa: BLE001
        fail(f"{args[1]}: not an archive ({exc})", 5)
    print(f"fake info: {args[1]}: {arr.shape} {arr.dtype}", flush=True)
elif cmd == "decompress":
    arr = read_npy(args[1])
    frames = opt("--frames")
    if frames:
        a, _, b = frames.partition(":")
        arr = arr[int(a or 0):int(b) if b else None]
    if env.get("FAKE_FAIL") == "decompress":
        fail("simulated failure")
    if env.get("FAKE_CORRUPT") == "1":
        arr = arr + 10
    write_npy(opt("-o"), arr)
    print(f"fake decompress: {args[1]} -> {opt('-o')}", flush=True)
elif cmd == "verify":  # verify ARCHIVE REF --decoded OUT [--frames A:B]; the bound is $TEZIP_BOUND
    ref, out = read_npy(args[2]), read_npy(opt("--decoded"))
    frames = opt("--frames")
    if frames:
        a, _, b = frames.partition(":")
        ref = ref[int(a or 0):int(b) if b else None]
    bad = int((np.abs(out.astype(float) - ref.astype(float)) > float(env.get("TEZIP_BOUND", "0"))).sum())
    if out.shape != ref.shape or bad:
        fail(f"{bad} element(s) lie outside the archive's bound", 9)
    print(f"verify: {out.size} elements; fake check passed", flush=True)
    print("verify: every element is within the archive's bound", file=sys.stderr, flush=True)
else:
    fail(f"the test double does not emulate {cmd!r}", 2)
