"""PyTorch modules as TorchScript archives, run on the CPU.

A ``torch.jit.ScriptModule`` (from ``torch.jit.script`` or ``torch.jit.trace``)
is saved as it is; a plain ``torch.nn.Module`` is scripted at save time. The
archive holds the compiled code and the weights and is read by TorchScript's
own loader, not Python's pickle, so the model loads where the class that
defined it is not importable. The model takes one float tensor (float32, or
the dtype of the module's parameters) and returns one tensor; it runs in eval
mode without gradients.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

from keel.errors import InvalidInput
from keel.formats.base import Saved

FILE = "model.pt"


class TorchPredictor:
    wants_frame = False

    def __init__(self, module: Any, dtype: str, *, live: bool = False) -> None:
        import torch

        self.native = module
        self._dtype = getattr(torch, dtype)
        self._live = live  # the caller's own module: leave its train/eval modes as they were
        # A live module may sit on a GPU; a loaded one is on the CPU (map_location).
        self._device = next((p.device for p in module.parameters()), torch.device("cpu"))

    def predict(self, x: Any) -> Any:
        import numpy as np
        import torch

        # A copy, never a view: a module that works in place must not change the caller's array.
        tensor = torch.tensor(np.asarray(x), dtype=self._dtype, device=self._device)
        with torch.no_grad(), _eval_mode(self.native) if self._live else nullcontext():
            out = self.native(tensor)
        if not isinstance(out, torch.Tensor):
            raise InvalidInput(f"the torch module returned a {type(out).__name__}; keel serves modules that "
                               "return one tensor (wrap the module to pick or stack its outputs)")
        return out.cpu().numpy()


class TorchFormat:
    name = "torch"
    version = 1

    def matches(self, model: Any) -> bool:
        import torch

        return isinstance(model, torch.nn.Module)

    def save(self, model: Any, folder: Path) -> Saved:
        import torch

        if isinstance(model, torch.jit.ScriptModule):
            scripted, kind = model, "traced" if isinstance(model, torch.jit.TracedModule) else "scripted"
        else:
            try:
                with _quiet_jit():
                    scripted = torch.jit.script(model)
            except Exception as exc:
                cls = f"{type(model).__module__}.{type(model).__qualname__}"
                reason = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
                raise InvalidInput(
                    f"cannot save the torch module {cls}: torch.jit.script failed ({reason}); trace it "
                    "instead and pass the result: save_model(torch.jit.trace(model, example_input), ...)"
                ) from exc
            kind = "module"
        with _quiet_jit():
            torch.jit.save(scripted, str(folder / FILE))
        return Saved(files=[FILE], modules=["torch", "numpy"], meta={"kind": kind, "dtype": _dtype_of(model)})

    def wrap(self, model: Any, saved: Saved) -> TorchPredictor:
        return TorchPredictor(model, saved.meta["dtype"], live=True)

    def load(self, folder: Path, saved: Saved) -> TorchPredictor:
        import torch

        dtype = saved.meta.get("dtype", "float32")
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise InvalidInput(f"bundle names an unknown torch dtype {dtype!r}")
        with _quiet_jit():
            module = torch.jit.load(str(folder / FILE), map_location="cpu")
        module.eval()
        return TorchPredictor(module, dtype)


def _dtype_of(module: Any) -> str:
    """The dtype inputs are cast to: that of the first floating parameter or buffer, else float32."""
    import itertools

    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            return str(tensor.dtype).removeprefix("torch.")
    return "float32"


@contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Eval mode for one call on the caller's module; then every submodule gets its own mode back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def _quiet_jit() -> Iterator[None]:
    # torch 2.13 deprecates torch.jit.*; these are keel's calls, not the user's, so the warning is noise here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
        yield
