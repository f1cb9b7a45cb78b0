"""What a side of the race in bench.py does, written once for the two autograd engines (ours, PyTorch).

Every side has prepare(idx, targets) -> batch (converted once, outside the timing),
loss_and_grads(batch) -> (loss, {parameter name: numpy gradient}) and step(batch) -> loss
(forward, backward, optimizer step). numpy_reference.NumpySide has the same methods, with the
backward written by hand.
"""

import numpy as np


class AutogradSide:
    """A side whose engine records the graph: subclasses set `named` ({name: parameter}) and
    `opt` (an optimizer with zero_grad and step), and define prepare and _loss(*batch)."""

    def _backward(self, batch):
        self.opt.zero_grad()
        loss = self._loss(*batch)
        loss.backward()
        return loss.item()

    def loss_and_grads(self, batch):
        loss = self._backward(batch)
        return loss, {n: np.asarray(p.grad) for n, p in self.named.items()}  # a CPU torch tensor converts too

    def step(self, batch):
        loss = self._backward(batch)
        self.opt.step()
        return loss
