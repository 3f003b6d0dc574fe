"""Each decoder layer's forward and backward recorded once as CUDA graphs and replayed at every training step
(``Speed.graphed``), through torch's ``torch.cuda.make_graphed_callables``.

A small model's QLoRA step on a GPU is bound by the CPU launching its kernels, not by the kernels: SmolLM2 at 16 x 384
tokens on one H200 kept the GPU busy 9-14% of a step (docs/performance.md). Recorded as graphs, a layer's forward
and backward are one launch each instead of hundreds. The rest of the step (embedding, final norm, head and loss,
optimizer) runs as before. ``graph_layers`` installs the graphs on a model; they are recorded at the first training
call of its first decoder layer, all layers together in one memory pool, in the order a step runs them.

A replay is exact only for calls like the recorded one, so a layer replays only when its call matches: the same
tensor shapes, dtypes and devices (every batch is padded to ``max_length``), the same other arguments, training mode
with gradients on, and no gradient held yet by the layer's trainable weights. That last check matters because torch
hands the recorded gradient buffer itself to the weights at the first backward: a second backward before the optimizer
step (gradient accumulation) replays into the buffer that already holds the first one's gradient. Any other call
(evaluation, generation with a cache, a second micro-batch) runs the layer as usual, and ``calls`` counts both ways.
Activation checkpointing re-runs a layer inside the backward, which a replay cannot, so such layers run as usual too.

At the first backward torch may warn that "The AccumulateGrad node's stream does not match the stream of the node that
produced the incoming gradient": the recording ran on a stream of its own, and the weights' gradient accumulators it
made outlive it. The gradients are right (``tests/test_layer_graphs.py`` checks them on a GPU); it costs a wait between
streams, which the measured speed holds (docs/performance.md).
"""

from __future__ import annotations

import warnings

import torch

PLAIN = (type(None), bool, int, float, str)  # argument values a recorded call may fix


def decoder_layers(model) -> list:
    """The model's repeated decoder layers (transformers' ``GradientCheckpointingLayer`` blocks), in order."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def _split(args: tuple, kwargs: dict):
    """One call's arguments as (spec, tensors, fixed): tensors and tuples of tensors become graph inputs, plain values
    are fixed; None when any argument is something else (a cache object: not a call a graph can replay)."""
    spec, tensors, fixed = [], [], []
    for name, value in [*enumerate(args), *sorted(kwargs.items())]:
        if isinstance(value, torch.Tensor):
            spec.append((name, None))
            tensors.append(value)
        elif isinstance(value, tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
            spec.append((name, len(value)))
            tensors.extend(value)
        elif isinstance(value, PLAIN):
            fixed.append((name, value))
        else:
            return None
    return tuple(spec), tensors, tuple(fixed)


def _join(spec: tuple, tensors, fixed: tuple) -> tuple[list, dict]:
    """The call's ``(args, kwargs)`` back from ``_split``'s parts."""
    values, it = dict(fixed), iter(tensors)
    for name, n in spec:
        values[name] = next(it) if n is None else tuple(next(it) for _ in range(n))
    args = [values.pop(i) for i in sorted(k for k in values if isinstance(k, int))]
    return args, values


def _key(spec: tuple, tensors, fixed: tuple) -> tuple:
    """What a replay must match: the arguments' layout, each tensor's shape, dtype, device and requires_grad, and the
    fixed values."""
    return spec, tuple((t.shape, t.dtype, t.device, t.requires_grad) for t in tensors), fixed


class _Positional(torch.nn.Module):
    """One decoder layer called with its tensors only, as ``make_graphed_callables`` records a module; its other
    arguments are the recorded call's. The layer is a submodule, so its weights are the graph's inputs too."""

    def __init__(self, layer, forward, spec: tuple, fixed: tuple):
        super().__init__()
        self.layer = layer
        self._forward, self._spec, self._fixed = forward, spec, fixed

    def forward(self, *tensors):
        args, kwargs = _join(self._spec, tensors, self._fixed)
        return self._forward(*args, **kwargs)


class LayerGraphs:
    """The decoder layers of a model, recorded as CUDA graphs at their first training call and replayed while calls
    match (module docstring). ``calls``: how many layer calls replayed and ran as usual; ``failed``: why recording
    failed, if it did (every call then runs as usual). ``maker``: torch's ``make_graphed_callables`` (a test on a
    CPU gives another). ``remove()`` puts the layers' own forwards back and drops the graphs."""

    def __init__(self, model, maker=None):
        self.layers = decoder_layers(model)
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no transformers decoder layers (GradientCheckpointingLayer) "
                             "to record as CUDA graphs: train it with Speed.graphed = False")
        self.maker = maker or torch.cuda.make_graphed_callables
        self.originals = [layer.forward for layer in self.layers]
        self.trainable = [[p for p in layer.parameters() if p.requires_grad] for layer in self.layers]
        self.graphs: list | None = None  # per layer: (the key it was recorded for, its graphed callable)
        self.failed: str | None = None
        self.shape: list | None = None  # the recorded hidden state's shape: (rows, tokens, width)
        self.calls = {"replayed": 0, "as_usual": 0}
        for i, layer in enumerate(self.layers):
            layer.forward = self._dispatcher(i)

    def _dispatcher(self, i: int):
        def forward(*args, **kwargs):
            return self._call(i, args, kwargs)

        return forward

    def report(self) -> dict:
        """What the metrics record: the layer calls replayed and run as usual, a failed recording's error, and the
        recorded shape."""
        return {**self.calls, "failed": self.failed, "shape": self.shape}

    def remove(self) -> None:
        """Put the layers' own forwards back and drop the graphs (their memory pool goes with the last reference)."""
        for layer, original in zip(self.layers, self.originals, strict=True):
            layer.forward = original
        self.graphs = None

    def _replayable(self, i: int) -> bool:
        layer = self.layers[i]
        return (self.failed is None and torch.is_grad_enabled() and layer.training
                and not getattr(layer, "gradient_checkpointing", False)
                and all(p.grad is None for p in self.trainable[i]))

    def _call(self, i: int, args: tuple, kwargs: dict):
        split = _split(args, kwargs) if self._replayable(i) else None
        if split is not None and self.graphs is None and i == 0:
            self._record(*split)
        if split is not None and self.graphs is not None and self.graphs[i][0] == _key(*split):
            self.calls["replayed"] += 1
            return self.graphs[i][1](*split[1])
        self.calls["as_usual"] += 1
        return self.originals[i](*args, **kwargs)

    def _record(self, spec: tuple, tensors: list, fixed: tuple) -> None:
        """Record every layer from the first layer's call: each layer's hidden-state input (the first tensor) as
        ``tensors[0]`` (requiring a gradient after any layer with trainable weights), the other tensors (mask,
        positions) shared. Recorded under the caller's autocast without its cast cache, which torch's recorder
        refuses (the adapters are already in the compute dtype, so the cache had nothing to keep)."""
        others = [t.detach().clone() for t in tensors[1:]]
        samples, keys, grad = [], [], tensors[0].requires_grad
        for trainable in self.trainable:
            hidden = tensors[0].detach().clone().requires_grad_(grad)
            samples.append((hidden, *others))
            keys.append(_key(spec, [hidden, *tensors[1:]], fixed))
            grad = grad or bool(trainable)
        modules = tuple(_Positional(layer, original, spec, fixed)
                        for layer, original in zip(self.layers, self.originals, strict=True))
        device = tensors[0].device.type
        try:
            with torch.autocast(device, dtype=torch.get_autocast_dtype(device),
                                enabled=torch.is_autocast_enabled(device), cache_enabled=False):
                graphed = self.maker(modules, tuple(samples))
        except Exception as err:  # the layers then run as usual: slower, the same result
            self.failed = f"{type(err).__name__}: {err}"
            warnings.warn(f"recording the decoder layers as CUDA graphs failed ({self.failed[:500]}); they run as "
                          "usual (Speed.graphed has no effect)", stacklevel=3)
            return
        self.graphs, self.shape = list(zip(keys, graphed, strict=True)), list(tensors[0].shape)


def graph_layers(model, maker=None) -> LayerGraphs:
    """Record ``model``'s decoder layers as CUDA graphs at their first training call (``LayerGraphs``)."""
    return LayerGraphs(model, maker)
