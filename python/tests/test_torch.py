"""curvkit from PyTorch: ops on torch tensors in place, the K-FAC step against a direct torch
computation, and every curvkit.torch optimizer training a small CNN on Fashion-MNIST.  Skipped,
with the reason shown, where PyTorch is not installed."""

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")
import torch.nn.functional as F  # noqa: E402

import curvkit as ck  # noqa: E402
import curvkit.torch as ckt  # noqa: E402

# the CNN example's model, data reader and training loop
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from torch_cnn import load_fashion_mnist, train  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and "cuda" in ck.backends() else [])
DATA = os.environ.get("CURVKIT_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_posv_on_torch_tensors_in_place(device, dtype):
    m = torch.randn(5, 6, 6, dtype=torch.float64)
    a = (m @ m.transpose(1, 2) / 6 + torch.eye(6, dtype=torch.float64)).to(device, dtype)
    b = torch.randn(5, 6, 2, dtype=dtype, device=device)
    want = torch.linalg.solve(a.double(), b.double())
    pointer = b.data_ptr()
    info = ck.posv(a.clone(), b)
    assert isinstance(info, torch.Tensor) and info.device.type == device
    assert not info.any() and b.data_ptr() == pointer
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert ((b.double() - want).norm() / want.norm()).item() < tol
    with pytest.raises(ValueError, match="last dimension must be contiguous"):
        ck.posv(a.clone(), torch.randn(2, 6, dtype=dtype, device=device).t())


def kfac_ef_expected(w, b, dw, db, a, g, m, lr, damping):
    """One K-FAC(-EF) step from zero state (docs/optimizer-spec.md §3): W~ -= lr H_G [dW|db] H_A,
    Omega summed over the positions of a sample, Gamma averaged over them."""
    omega = a.T @ a / m
    gamma = g.T @ g / g.shape[0]
    pi = torch.sqrt((omega.trace() / omega.shape[0]) / (gamma.trace() / gamma.shape[0]))
    s = damping ** 0.5
    h_a = torch.linalg.inv(omega + pi * s * torch.eye(omega.shape[0], dtype=a.dtype))
    h_g = torch.linalg.inv(gamma + s / pi * torch.eye(gamma.shape[0], dtype=a.dtype))
    p = h_g @ torch.cat([dw, db[:, None]], dim=1) @ h_a
    return w - lr * p[:, :-1], b - lr * p[:, -1]


def test_kfac_step_equals_direct_torch_computation():
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    conv = torch.nn.Conv2d(2, 3, 3, padding=1).double()
    fc = torch.nn.Linear(3 * 4 * 4, 5).double()
    x = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 5, (6,))
    w0 = [conv.weight.detach().clone(), conv.bias.detach().clone(),
          fc.weight.detach().clone(), fc.bias.detach().clone()]

    # the oracle: a and g from autograd (retain_grad), the K-FAC formula with torch.linalg
    z1 = conv(x)
    z1.retain_grad()
    h = torch.relu(z1).flatten(1)
    z2 = fc(h)
    z2.retain_grad()
    F.cross_entropy(z2, y).backward()
    m = x.shape[0]
    a1 = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)
    a1 = torch.cat([a1, torch.ones(a1.shape[0], 1, dtype=a1.dtype)], 1)
    g1 = z1.grad.permute(0, 2, 3, 1).reshape(-1, 3) * m
    a2 = torch.cat([h.detach(), torch.ones(m, 1, dtype=h.dtype)], 1)
    g2 = z2.grad * m
    want_conv = kfac_ef_expected(w0[0].view(3, -1), w0[1], conv.weight.grad.view(3, -1),
                                 conv.bias.grad, a1, g1, m, 0.1, 1.0)
    want_fc = kfac_ef_expected(w0[2], w0[3], fc.weight.grad, fc.bias.grad, a2, g2, m, 0.1, 1.0)

    # curvkit.torch on the same model and batch
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Flatten(), fc)
    with torch.no_grad():
        for p, p0 in zip(model.parameters(), w0):
            p.copy_(p0)
    opt = ckt.KFAC_EF(model, lr=0.1, preset="autoencoder")
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad()
    opt.backward(loss, logits)
    opt.step()
    got = [conv.weight.detach().view(3, -1), conv.bias.detach(), fc.weight.detach(),
           fc.bias.detach()]
    for g, w in zip(got, [*want_conv, *want_fc]):
        assert ((g - w).norm() / w.norm()).item() < 1e-10
    assert opt.unhealthy() == 0




@pytest.mark.skipif(not os.path.isdir(DATA), reason=f"Fashion-MNIST not found at {DATA}")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["kfac", "kfac-ef", "kfac-2l", "shampoo", "tnt", "mbf", "mbag",
                                  "muon", "tengrad", "kbfgs", "kbfgs-l", "sgd", "adamw"])
def test_each_optimizer_trains_a_cnn_on_fashion_mnist(name, device):
    images, labels = load_fashion_mnist(DATA, limit=4096)
    torch.set_num_threads(2)
    losses, _, _ = train(name, images, labels, steps=40, batch=64, lr=None,
                      device=torch.device(device), warmup=0)
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert np.isfinite(losses).all(), f"{name}: non-finite loss"
    assert last < 0.8 * first, f"{name}: loss {first:.3f} -> {last:.3f}"


def test_methods_that_need_the_cpp_trainer_say_so():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(NotImplementedError, match="C\\+\\+ trainer"):
        ckt.CurvkitOptimizer(model, "smw-ng")


def tnt_direction(grad, eps):
    """TNT's first direction (docs/optimizer-spec.md §5) for one tensor variable: statistics
    S_i = mat_i(G) mat_i(G)^T, trace normalisation (thesis eq. 4.10), P = G x_i (U_i + eps I)^-1."""
    order, dims, size = grad.dim(), grad.shape, grad.numel()
    unfold = [grad.movedim(k, 0).reshape(dims[k], -1) for k in range(order)]
    stats = [u @ u.T for u in unfold]
    c0 = (sum(s.trace() for s in stats) / order / size) ** (1.0 / order)
    p = grad.clone()
    for k in range(order):
        u = stats[k] / (c0 ** (order - 1) * (size // dims[k]))
        v = torch.linalg.inv(u + eps * torch.eye(dims[k], dtype=grad.dtype))
        p = torch.tensordot(v, p.movedim(k, 0), dims=1).movedim(0, k)
    return p


def test_tnt_step_equals_direct_torch_computation():
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    conv = torch.nn.Conv2d(2, 3, 3).double()
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(12, 4).double())
    x, y = torch.randn(5, 2, 4, 4, dtype=torch.float64), torch.randint(0, 4, (5,))
    before = [p.detach().clone() for p in model.parameters()]
    opt = ckt.CurvkitOptimizer(model, "tnt-ef", preset="autoencoder", lr=1.0)  # eps 0.1, wd 0
    logits = model(x)
    opt.zero_grad()
    opt.backward(F.cross_entropy(logits, y), logits)
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    # a convolution is the tensor (c_out, c_in, kh kw); linear (d_out, d_in); biases (n)
    for p, p0, g in zip(model.parameters(), before, grads):
        shaped = g.reshape(3, 2, 9) if g.dim() == 4 else g
        want = p0 - tnt_direction(shaped, 0.1).reshape(p0.shape)
        assert ((p.detach() - want).norm() / (want - p0).norm()).item() < 1e-12
