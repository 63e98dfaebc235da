"""Data-parallel fit with torch.distributed, launched by torchrun.

Two processes on this machine (the gloo backend on CPUs, NCCL with one GPU
per process)::

    torchrun --nproc-per-node 2 examples/distributed_fit.py

Every rank loads the same data and fits ``IICClustering(distributed=True)``;
each trains on its share of every batch, and every rank ends with the same
fitted estimator. Each prints its results: the same labels (compare the
hashes), the same loss. Run without torchrun, the script fits in one process,
as usual, for comparison::

    python examples/distributed_fit.py

``--labels FILE`` saves rank 0's labels (a ``.npy`` file) to compare runs;
``--batch-size`` and ``--n-epochs`` set those parameters.
Not a gallery example: the documentation build does not run it.
"""

import argparse
import hashlib
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score

from sklearn_iic import IICClustering


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", help="save rank 0's labels to this .npy file")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-epochs", type=int, default=None, help="default: 'auto'")
    args = parser.parse_args()

    launched = "LOCAL_RANK" in os.environ  # torchrun sets it, with the rendezvous
    if launched:
        if torch.cuda.is_available():
            # One GPU per process: device="auto" trains on the current one.
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    rank = dist.get_rank() if launched else 0
    world_size = dist.get_world_size() if launched else 1

    # Every rank holds the whole data set: fit checks that they are the same.
    X, y = load_digits(return_X_y=True)
    X = X / 16

    start = time.perf_counter()
    model = IICClustering(
        n_clusters=10, batch_size=args.batch_size, n_epochs=args.n_epochs or "auto",
        random_state=0, distributed=launched,
    ).fit(X)
    seconds = time.perf_counter() - start

    labels_hash = hashlib.sha1(model.labels_.tobytes()).hexdigest()[:12]
    report = (
        f"rank {rank} of {world_size}: fit in {seconds:.1f} s, {model.n_iter_} epochs, "
        f"last epoch's loss {model.loss_curve_[-1]:.6f}, ARI against the digits "
        f"{adjusted_rand_score(y, model.labels_):.3f}, labels hash {labels_hash}"
    )
    for turn in range(world_size):  # one rank after the other
        if turn == rank:
            print(report, flush=True)
        if launched:
            dist.barrier()
    if args.labels and rank == 0:
        np.save(args.labels, model.labels_)
    if launched:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
