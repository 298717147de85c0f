"""Trains a small CNN on Fashion-MNIST with a curvkit optimizer from PyTorch (curvkit.torch), and
times its steps against torch.optim.Adam on the same model.

    python3 examples/torch_cnn.py --optimizer kfac --steps 200
    python3 examples/torch_cnn.py --optimizer all --steps 100 --batch 128   # every method

The data set is Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or
--data DIR with the four idx .gz files.  Prints the loss curve's start and end and the mean
time per step (after --warmup steps), and that time over torch.optim.Adam's, timed in lockstep
(one Adam step on a twin model after each step of the method, on the same mini-batch).
"""

import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import curvkit.torch as ckt

METHODS = {"kfac": ckt.KFAC, "kfac-ef": ckt.KFAC_EF, "kfac-2l": ckt.KFAC2L,
           "shampoo": ckt.Shampoo, "tnt": ckt.TNT, "mbf": ckt.MBF, "mbag": ckt.MBAG,
           "muon": ckt.Muon, "tengrad": ckt.TENGraD, "kbfgs": ckt.KBFGS, "kbfgs-l": ckt.KBFGSL,
           "sgd": ckt.SGD, "adamw": ckt.AdamW}

# Learning rates: the C++ trainer's CNN sweeps (docs/training.md), lowered where this model
# diverged within 40 steps of batch 64 (K-FAC family: 0.3 -> 0.01; TNT: 1e-3 -> 3e-6, see
# docs/performance.md "PyTorch"); the methods not listed use their "cnn" preset's rate.
TUNED_LR = {"sgd": 0.09, "adamw": 0.003, "kfac": 0.01, "kfac-ef": 0.01, "kfac-2l": 0.01,
            "shampoo": 0.009, "tnt": 3e-6, "mbf": 3e-5, "mbag": 0.03, "muon": 0.06,
            "tengrad": 0.009}


def load_fashion_mnist(directory, split="train", limit=None):
    """Images (n, 1, 28, 28) scaled to [0, 1] and labels (n,) from the idx .gz files."""
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    if limit:
        images, labels = images[:limit], labels[:limit]
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))


def small_cnn():
    """conv 1->16 (5x5) - relu - maxpool - conv 16->32 (5x5) - relu - maxpool - linear 512->10."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(512, 10))


class Trainer:
    """One model and its optimizer ("torch-adam" or a METHODS name); step(x, y) trains on one
    mini-batch and returns (loss, seconds)."""

    def __init__(self, name, lr, device, seed=0):
        torch.manual_seed(seed)
        self.name, self.device = name, device
        self.model = small_cnn().to(device)
        if name == "torch-adam":
            self.opt = torch.optim.Adam(self.model.parameters(), lr=lr or 1e-3)
        else:
            self.opt = METHODS[name](self.model, lr=lr or TUNED_LR.get(name), preset="cnn")

    def step(self, x, y):
        model, opt = self.model, self.opt
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        if self.name == "torch-adam":
            loss.backward()
            opt.step()
        else:
            opt.backward(loss, logits)
            opt.step(closure if opt.needs_closure else None)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return loss.item(), time.perf_counter() - start


def train(name, images, labels, steps, batch, lr, device, warmup, seed=0):
    """Trains `name` and, step by step in lockstep on the same mini-batches, torch.optim.Adam
    on a twin of the model (same initial weights), so both are timed in the same moments of a
    shared machine.  Returns (losses, seconds per step, Adam's seconds per step), the times
    averaged after `warmup` steps."""
    method = Trainer(name, lr, device, seed)
    adam = Trainer("torch-adam", None, device, seed)
    losses, times, adam_times = [], [], []
    n = images.shape[0]
    for step in range(steps):
        idx = torch.randint(0, n, (batch,))
        x, y = images[idx].to(device), labels[idx].to(device)
        loss, t = method.step(x, y)
        adam_times.append(adam.step(x, y)[1])
        times.append(t)
        losses.append(loss)
    return losses, float(np.mean(times[warmup:])), float(np.mean(adam_times[warmup:]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--optimizer", default="kfac", help="a curvkit method, or 'all'")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=None,
                   help="default: TUNED_LR, else the method's cnn preset")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    images, labels = load_fashion_mnist(a.data)
    names = list(METHODS) if a.optimizer == "all" else [a.optimizer]
    print(f"device {device}, batch {a.batch}, {a.steps} steps, each method in lockstep with "
          "torch.optim.Adam on the same mini-batches")
    print(f"{'optimizer':10} {'first loss':>10} {'last-10 loss':>12} {'ms/step':>8} "
          f"{'Adam ms':>8} {'/ Adam':>7}")
    for name in names:
        losses, t, adam = train(name, images, labels, a.steps, a.batch, a.lr, device, a.warmup)
        print(f"{name:10} {losses[0]:10.3f} {np.mean(losses[-10:]):12.3f} {t * 1e3:8.2f} "
              f"{adam * 1e3:8.2f} {t / adam:7.2f}")


if __name__ == "__main__":
    main()
