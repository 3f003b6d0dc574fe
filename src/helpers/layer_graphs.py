"""Each decoder layer's forward and backward recorded once as CUDA graphs and replayed at every training step
(``Speed.graphed``), through torch's ``torch.cuda.make_graphed_callables``.

A small model's QLoRA step on a GPU is bound by the CPU launching its kernels, not by the kernels: SmolLM2 at 16 x 384
tokens on one H200 kept the GPU busy 9-14% of a step (docs/performance.md). Recorded as graphs, a layer's forward
and backward are one launch each instead of hundreds. The rest of the step (embedding, final norm, head and loss,
optimizer) runs as before. ``graph_layers`` installs the graphs on a model; they are recorded at the first training
call of its first decoder layer, all layers together in one memory pool, in the order a step runs them.

A replay is exact only for calls like the recorded one, so a layer replays only when its call matches: the same
tensor shapes, dtypes and devices (``speed.one_shape`` pads every batch to one length), the same other arguments and
autocast state, training mode with gradients on, and its trainable weights needing gradients and holding none yet.
That last check matters because torch hands the recorded gradient buffer itself to the weights at the first
backward: a second backward before the optimizer step (gradient accumulation) replays into the buffer that already
holds the first one's gradient. Likewise a layer whose last replay still waits for its backward (two forwards, one
backward) runs as usual: a replay overwrites what the waiting backward reads. Any other call (evaluation,
generation with a cache, an adapter switched off, a second micro-batch) runs the layer as usual, and ``calls``
counts both ways; a training call unlike the recorded one warns once, unless only its rows differ (an epoch's last,
shorter batch). Activation checkpointing re-runs a layer
inside the backward, which a replay cannot, so such layers run as usual too.

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
    """What a replay must match: the arguments' layout, each tensor's shape, dtype, device and requires_grad, the
    fixed values with their types, and the autocast state of the tensors' device."""
    device = tensors[0].device.type
    return (spec, tuple((t.shape, t.dtype, t.device, t.requires_grad) for t in tensors),
            tuple((name, type(value).__name__, value) for name, value in fixed),
            torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))


def _rowless(key: tuple) -> tuple:
    """``key`` without the tensors' first dimension (the batch's rows, where it has them)."""
    spec, tensors, *rest = key
    return (spec, tuple((shape[1:], *more) for shape, *more in tensors), *rest)


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
    failed or was not tried, if so (every call then runs as usual). ``maker``: torch's ``make_graphed_callables`` (a
    test on a CPU gives another). ``remove()`` puts the layers' own forwards back and drops the graphs."""

    def __init__(self, model, maker=None):
        self.layers = decoder_layers(model)
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no transformers decoder layers (GradientCheckpointingLayer) "
                             "to record as CUDA graphs: train it with Speed.graphed = False")
        self.maker = maker or torch.cuda.make_graphed_callables
        self.originals = [layer.forward for layer in self.layers]
        self.own_forward = ["forward" in vars(layer) for layer in self.layers]  # set on the instance before us
        self.trainable = [[p for p in layer.parameters() if p.requires_grad] for layer in self.layers]
        self.graphs: list | None = None  # per layer: (the key it was recorded for, its graphed callable)
        self.failed: str | None = None
        self.shape: list | None = None  # the recorded hidden state's shape: (rows, tokens, width)
        self.calls = {"replayed": 0, "as_usual": 0}
        self.pending = [False] * len(self.layers)  # a replay whose backward has not run yet
        self.warned = False
        kinds = sorted({type(layer).__name__ for layer in self.layers})
        if len(kinds) > 1:  # e.g. a vision tower's layers beside the text decoder's: not one stack run in order
            self.failed = f"layers of several kinds ({', '.join(kinds)}): not recorded"
            warnings.warn(f"the model's {self.failed}; they run as usual (Speed.graphed has no effect)", stacklevel=3)
            return
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
        """Put the layers' own forwards back and drop the graphs. The graphs' memory pool goes at the next garbage
        collection (torch's graphed callables hold themselves in reference cycles): ``train_arm`` collects."""
        for layer, original, own in zip(self.layers, self.originals, self.own_forward, strict=True):
            if own:
                layer.forward = original
            elif "forward" in vars(layer):
                del layer.forward  # the class's method again: no bound method of the layer held by the layer
        self.graphs = None

    def _replayable(self, i: int) -> bool:
        """A call that may replay: training mode with gradients on, no checkpointing, no replay of this layer still
        waiting for its backward (two forwards before one backward), and the layer's trainable weights still needing
        gradients (an adapter switched off, or another one on, does not) and holding none (module docstring)."""
        layer = self.layers[i]
        return (self.failed is None and torch.is_grad_enabled() and layer.training and not self.pending[i]
                and not getattr(layer, "gradient_checkpointing", False)
                and all(p.requires_grad and p.grad is None for p in self.trainable[i]))

    def _call(self, i: int, args: tuple, kwargs: dict):
        split = _split(args, kwargs) if self._replayable(i) else None
        if split is not None and self.graphs is None and i == 0:
            self._record(*split)
        if split is not None and self.graphs is not None:
            key = _key(*split)
            if self.graphs[i][0] == key:
                self.calls["replayed"] += 1
                return self._replay(i, split[1])
            if not self.warned and _rowless(self.graphs[i][0]) != _rowless(key):  # an epoch's last, short batch: silent
                self.warned = True
                warnings.warn(f"decoder layer {i} was called for training otherwise than the CUDA graphs recorded "
                              f"(the hidden state {list(split[1][0].shape)} against {self.shape}, or another "
                              "argument, such as a mask present or not): such calls run as usual, slower; the "
                              "arm's metrics count them (layer_graphs)", stacklevel=4)
        self.calls["as_usual"] += 1
        return self.originals[i](*args, **kwargs)

    def _replay(self, i: int, tensors: list):
        out = self.graphs[i][1](*tensors)
        needing = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.requires_grad]
        if needing:  # until its gradient arrives, another forward of this layer would overwrite what it needs
            self.pending[i] = True
            needing[0].register_hook(lambda grad: self.pending.__setitem__(i, False))
        return out

    def _record(self, spec: tuple, tensors: list, fixed: tuple) -> None:
        """Record every layer from the first layer's call: each layer gets buffers of its own (layers of some models
        take other masks and positions, e.g. gemma-3's sliding-window layers), its hidden-state input (the first
        tensor) requiring a gradient after any layer with trainable weights. Recorded under the caller's autocast
        without its cast cache, which torch's recorder refuses (the adapters are already in the compute dtype, so
        the cache had nothing to keep). Out of memory is raised (``train_arm`` trains again without graphs); another
        failure warns, and the layers run as usual, unless the device is left unusable."""
        samples, keys, grad = [], [], tensors[0].requires_grad
        for trainable in self.trainable:
            hidden = tensors[0].detach().clone().requires_grad_(grad)
            samples.append((hidden, *(t.detach().clone().requires_grad_(t.requires_grad) for t in tensors[1:])))
            keys.append(_key(spec, [hidden, *tensors[1:]], fixed))
            grad = grad or bool(trainable)
        modules = tuple(_Positional(layer, original, spec, fixed)
                        for layer, original in zip(self.layers, self.originals, strict=True))
        device = tensors[0].device.type
        try:
            with torch.autocast(device, dtype=torch.get_autocast_dtype(device),
                                enabled=torch.is_autocast_enabled(device), cache_enabled=False):
                graphed = self.maker(modules, tuple(samples))
        except torch.OutOfMemoryError:
            raise
        except Exception as err:  # the layers then run as usual: slower, the same result
            self.failed = f"{type(err).__name__}: {err}"
            if device == "cuda":
                try:
                    torch.cuda.synchronize()
                except Exception as broken:
                    raise RuntimeError(f"recording the decoder layers as CUDA graphs failed ({self.failed[:500]}) and "
                                       "left the GPU unusable; train with Speed.graphed = False") from broken
            warnings.warn(f"recording the decoder layers as CUDA graphs failed ({self.failed[:500]}); they run as "
                          "usual (Speed.graphed has no effect)", stacklevel=4)
            return
        self.graphs, self.shape = list(zip(keys, graphed, strict=True)), list(tensors[0].shape)


def graph_layers(model, maker=None) -> LayerGraphs:
    """Record ``model``'s decoder layers as CUDA graphs at their first training call (``LayerGraphs``)."""
    return LayerGraphs(model, maker)
