"""curvkit's optimizers as torch.optim optimizers.

    model = Net().to(device)
    opt = curvkit.torch.KFAC(model, lr=0.003)
    for x, y in loader:
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        opt.backward(loss, logits)   # loss.backward() + the statistics the method needs
        opt.step()

The optimizer registers hooks on every nn.Linear and nn.Conv2d of the model to keep their
inputs a and output gradients g (only on the steps whose method asks for them), describes each
layer to curvkit's optimizer layer with views of the model's own tensors (no copies of weights
or gradients), and runs it on the tensors' device: CUDA tensors on the cuda backend on the
current stream, CPU tensors on Kokkos.  Every other parameter (batch norm, embeddings, ...) is a
"vector" layer, updated by the method's first-order rule.

Methods that need sampled-label statistics (K-FAC, MBF, TNT, ...) get them from backward():
labels drawn from the model's predictive distribution (loss='cross_entropy': softmax
categorical; loss='mse': the output plus unit Gaussian noise) are backpropagated once more.
K-BFGS's second pass on the same mini-batch at the updated weights is step(closure).  SMW-NG and
SMW-GN (per-sample losses, Gauss-Newton cotangents) are for the C++ trainer only.

Conventions: docs/optimizer-spec.md §0 (g is the per-sample gradient: m times the gradient of the
mean loss, so losses must be means over the mini-batch).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from . import Optimizer as _CurvkitOptimizer

_LINEAR, _CONV2D, _VECTOR = 0, 1, 2


class CurvkitOptimizer(torch.optim.Optimizer):
    """A curvkit optimizer (curvkit.optimizer_names()) over a model's parameters.

    method: the registry name; preset: 'cnn' (statistics every 10 steps, refreshes every 100)
    or 'autoencoder' (every step / every 20); lr: overrides the preset's rate (a torch LR
    scheduler may change param_groups[0]['lr'] between steps); loss: how backward() samples
    labels ('cross_entropy' or 'mse')."""

    def __init__(self, model: torch.nn.Module, method: str, lr: float | None = None,
                 preset: str = "cnn", loss: str = "cross_entropy"):
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"loss must be 'cross_entropy' or 'mse', not {loss!r}")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        dtype = params[0].dtype
        if dtype not in (torch.float32, torch.float64) or any(p.dtype != dtype for p in params):
            raise TypeError("the parameters must all be float32 or all float64")
        self._impl = _CurvkitOptimizer(method, preset, lr or 0.0, str(dtype).replace("torch.", ""))
        super().__init__(params, {"lr": self._impl.lr})
        needs = self._impl.needs()
        if needs["losses"] or needs["cotangents"] or needs["second_pass"] == 1:
            raise NotImplementedError(
                f"{method} needs per-sample losses or Gauss-Newton cotangents: use the C++ "
                "trainer (examples/train_fashion_mnist) for it")
        self.method, self._loss = method, loss
        self._modules = [m for m in model.modules()
                         if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        in_modules = {id(p) for m in self._modules for p in m.parameters(recurse=False)}
        self._vectors = [p for p in params if id(p) not in in_modules]
        self._capture = None  # None, "g", "g_sampled" or "second": what the hooks keep now
        self._saved = {}
        # The first layer's input needs no gradient; its output gradient is what the hook wants.
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients")
        for m in self._modules:
            m.register_forward_hook(self._forward_hook)
            m.register_full_backward_hook(self._backward_hook)
        self._initialized = False

    # ---- hooks ------------------------------------------------------------------------------

    def _forward_hook(self, module, inputs, output):
        if not torch.is_grad_enabled():
            return
        self._saved.setdefault(id(module), {})
        self._saved[id(module)]["input"] = inputs[0].detach()
        self._saved[id(module)]["z"] = output.detach()

    def _backward_hook(self, module, grad_input, grad_output):
        if self._capture is not None:
            key = "g_sampled" if self._capture == "g_sampled" else "g"
            self._saved.setdefault(id(module), {})[key] = grad_output[0].detach()

    # ---- layer descriptions -----------------------------------------------------------------

    @staticmethod
    def _rows(t, conv, scale=None):
        """(m S) x channels, contiguous: sample-major rows, one per position, times scale
        (written in one pass when the layout or the scale needs a copy at all)."""
        src = t.permute(0, 2, 3, 1) if conv else t
        if scale is None:
            return src.reshape(-1, src.shape[-1]).contiguous()
        out = torch.empty(src.shape, dtype=t.dtype, device=t.device)
        torch.mul(src, scale, out=out)
        return out.view(-1, out.shape[-1])

    def _inputs(self, module, x):
        """The layer's a: (m S) x (d_in [+ 1]), sample-major rows, a ones column for the bias;
        written in one copy (the unfolded patches are transposed straight into it)."""
        if isinstance(module, torch.nn.Conv2d):
            x = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
            x = x.transpose(1, 2)  # m x S x (c_in kh kw), not contiguous
        else:
            x = x.reshape(-1, 1, x.shape[-1])
        bias = module.bias is not None
        out = x.new_empty(x.shape[0], x.shape[1], x.shape[2] + bias)
        out[:, :, :x.shape[2]] = x
        if bias:
            out[:, :, -1] = 1
        return out.view(-1, out.shape[2])

    def _layers(self, needs, sampled_grads=None):
        layers = []
        last = len(self._modules) - 1
        for i, m in enumerate(self._modules):
            conv = isinstance(m, torch.nn.Conv2d)
            w = m.weight
            layer = {"kind": _CONV2D if conv else _LINEAR, "w": w.view(w.shape[0], -1),
                     "dw": self._grad(w).view(w.shape[0], -1), "output_layer": i == last}
            if m.bias is not None:
                layer["b"] = m.bias.view(1, -1)
                layer["db"] = self._grad(m.bias).view(1, -1)
            if conv:
                layer.update(c_in=m.in_channels // m.groups, kh=m.kernel_size[0],
                             kw=m.kernel_size[1])
            saved = self._saved.get(id(m), {})
            if "input" in saved:
                layer["m"] = saved["input"].shape[0]
            if needs.get("a"):
                layer["a"] = self._inputs(m, self._need(saved, "input"))
            scale = float(layer.get("m", 1))
            for key in ("g", "g_sampled"):
                if needs.get(key):
                    layer[key] = self._rows(self._need(saved, key), conv, scale)
            if needs.get("z"):
                layer["z"] = self._rows(self._need(saved, "z"), conv)
            if needs.get("grad_sampled"):
                if sampled_grads is None:
                    raise RuntimeError(f"{self.method} needs sampled-label gradients: call "
                                       "opt.backward(loss, outputs) instead of loss.backward()")
                layer["dw_sampled"] = sampled_grads[id(w)].view(w.shape[0], -1)
                if m.bias is not None:
                    layer["db_sampled"] = sampled_grads[id(m.bias)].view(1, -1)
            layers.append(layer)
        for p in self._vectors:
            layers.append({"kind": _VECTOR, "w": p.view(1, -1),
                           "dw": self._grad(p).view(1, -1)})
        return layers

    def _need(self, saved, key):
        if key not in saved:
            raise RuntimeError(f"{self.method}: no {key} recorded for a layer: run the forward "
                               "pass and opt.backward(loss, outputs) before step()")
        return saved[key]

    @staticmethod
    def _grad(p):
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        return p.grad

    # ---- the training-loop API ----------------------------------------------------------------

    def backward(self, loss: torch.Tensor, outputs: torch.Tensor | None = None):
        """loss.backward(), keeping the output gradients the next step needs, after a backward
        of the loss with labels sampled from `outputs` (the model's logits or predictions)
        when the method needs sampled-label statistics."""
        needs = self._impl.needs()
        self._sampled_grads = None
        if needs["g_sampled"] or needs["grad_sampled"]:
            if outputs is None:
                raise ValueError(f"{self.method} needs the model outputs to sample labels: "
                                 "opt.backward(loss, outputs)")
            self._capture = "g_sampled"
            sampled = self._sampled_loss(outputs)
            params = [p for g in self.param_groups for p in g["params"]]
            grads = torch.autograd.grad(sampled, params, retain_graph=True, allow_unused=True)
            self._sampled_grads = {id(p): (g if g is not None else torch.zeros_like(p))
                                   for p, g in zip(params, grads)}
        self._capture = "g" if needs["g"] else None
        try:
            loss.backward()
        finally:
            self._capture = None

    def _sampled_loss(self, outputs):
        out = outputs.detach()
        if self._loss == "cross_entropy":
            labels = torch.multinomial(torch.softmax(out, dim=-1), 1).squeeze(-1)
            return F.cross_entropy(outputs, labels)
        target = out + torch.randn_like(out)
        return 0.5 * ((outputs - target) ** 2).sum() / outputs.shape[0]

    @torch.no_grad()
    def step(self, closure=None):
        """One step of the method on every layer.  closure (K-BFGS only: needs_closure; other
        methods do not call it) re-evaluates the mini-batch at the updated weights: it must
        zero the gradients, run the forward pass, call loss.backward() and return the loss."""
        self._impl.lr = self.param_groups[0]["lr"]
        needs = self._impl.needs()
        if not self._initialized:
            self._impl.init(self._layers({}))
            self._initialized = True
        self._impl.step(self._layers(needs, getattr(self, "_sampled_grads", None)))
        self._sampled_grads = None
        if needs["second_pass"] == 2:
            if closure is None:
                raise RuntimeError(f"{self.method} needs step(closure): a second forward and "
                                   "backward pass on the same mini-batch")
            self._capture = "g"
            try:
                with torch.enable_grad():
                    loss = closure()
            finally:
                self._capture = None
            self._impl.finish_step(self._layers({"z": True, "g": True}))
            return loss
        return None

    @property
    def needs_closure(self) -> bool:
        """True for methods whose step needs a second pass (step(closure)); the others do not
        call a closure they are given."""
        return self._impl.needs()["second_pass"] == 2

    def unhealthy(self) -> int:
        """Waits for the device; the matrices whose last refresh reported a failure."""
        return self._impl.unhealthy()


def _method(name, doc):
    class _Method(CurvkitOptimizer):
        def __init__(self, model, lr=None, preset="cnn", loss="cross_entropy"):
            super().__init__(model, name, lr=lr, preset=preset, loss=loss)

    _Method.__doc__ = doc + f" (curvkit method '{name}'; see CurvkitOptimizer)"
    return _Method


KFAC = _method("kfac", "K-FAC with the true Fisher (sampled labels)")
KFAC_EF = _method("kfac-ef", "K-FAC with the empirical Fisher")
KFAC2L = _method("kfac-2l", "Two-level K-FAC (K-FAC plus a coarse correction)")
Shampoo = _method("shampoo", "Shampoo (inverse 4th roots by Newton-Schulz)")
TNT = _method("tnt", "TNT (tensor-normal training)")
MBF = _method("mbf", "MBF (mini-block Fisher)")
MBAG = _method("mbag", "MBAG")
Muon = _method("muon", "Muon (Newton-Schulz orthogonalised momentum; AdamW on the rest)")
TENGraD = _method("tengrad", "TENGraD (exact per-layer natural gradient by Woodbury)")
KBFGS = _method("kbfgs", "K-BFGS (needs step(closure))")
KBFGSL = _method("kbfgs-l", "K-BFGS(L) (needs step(closure))")
SGD = _method("sgd", "SGD with momentum (curvkit's baseline)")
AdamW = _method("adamw", "AdamW (curvkit's baseline)")

__all__ = ["CurvkitOptimizer", "KFAC", "KFAC_EF", "KFAC2L", "Shampoo", "TNT", "MBF", "MBAG",
           "Muon", "TENGraD", "KBFGS", "KBFGSL", "SGD", "AdamW"]
