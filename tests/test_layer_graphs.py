"""helpers.layer_graphs: decoder layers recorded as CUDA graphs at their first training call and replayed while calls
match. On a CPU torch's recorder is replaced by ``StaticRecorder``, which keeps its buffers: a call copies its inputs
into the tensors it was recorded with, the output and the gradients are written into fixed buffers (which torch
hands to the weights' ``.grad``), and the backward reads the input buffers as they are when it runs. So the CPU
tests see what a replay would get wrong (shared buffers, two forwards before one backward, a second backward into
the same gradient buffer), each with a control that shows the test would see it. The real recorder runs in the
GPU-only test at the end."""
import warnings

import pytest
import torch
from peft import LoraConfig, get_peft_model

from helpers import layer_graphs as lg

LAYERS = 3


def lora_model(device="cpu", dtype=torch.float32, kind="llama"):
    """A tiny Llama, or a tiny gemma-3 whose sliding-window and full layers get masks and positions of their own."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=97, max_position_embeddings=64, attn_implementation="sdpa")
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape))
    else:
        model = Gemma3ForCausalLM(Gemma3TextConfig(**shape, head_dim=8, sliding_window=4, layer_types=[
            "sliding_attention", "full_attention", "sliding_attention"]))
    model = get_peft_model(model.to(device=device, dtype=dtype),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                      init_lora_weights=False))  # non-zero B: every LoRA weight gets a gradient
    model.train()
    return model


def batch(rows=4, length=12, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 97, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # a left-padded row: the layers get a 4-D mask tensor
    labels = ids.masked_fill(mask == 0, -100)
    tensors = {k: v.to(device) for k, v in dict(input_ids=ids, attention_mask=mask, labels=labels).items()}
    return {**tensors, "use_cache": False}  # as TRL's SFTTrainer calls the model: no cache object to fill


class StaticRecorder:
    """Stands in for torch.cuda.make_graphed_callables on a CPU, buffers included (module docstring)."""

    def __init__(self):
        self.given = []

    def __call__(self, modules, samples):
        assert not torch.is_autocast_cache_enabled()  # torch's recorder refuses the autocast cache
        self.given.append((modules, samples))
        return tuple(self.graphed(module, static) for module, static in zip(modules, samples))

    @staticmethod
    def graphed(module, static):
        params = tuple(module.parameters())
        output, gradients = [], {}

        class Replay(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *inputs):
                for buffer, given in zip(static, inputs):
                    if buffer.data_ptr() != given.data_ptr():
                        buffer.data.copy_(given)  # (.data: no version bump, as a replay's kernels write)
                out = module(*(b.detach() for b in static))
                output[:] = [out.clone()] if not output else output[:1]
                output[0].data.copy_(out)
                return output[0].detach()

            @staticmethod
            def backward(ctx, grad):
                with torch.enable_grad():  # what the buffers hold now, as a replayed backward reads them
                    inputs = [b.detach().requires_grad_(b.requires_grad) for b in static]
                    surface = (*inputs, *params)
                    wanted = [t for t in surface if t.requires_grad]
                    got = iter(torch.autograd.grad(module(*inputs), wanted, grad, allow_unused=True))
                result = []
                for k, t in enumerate(surface):
                    g = next(got) if t.requires_grad else None
                    if g is not None:  # into a fixed buffer, handed out as torch's recorder does
                        gradients.setdefault(k, torch.zeros_like(g)).data.copy_(g)
                        g = gradients[k].detach()
                    result.append(g)
                return tuple(result)

        return lambda *args: Replay.apply(*args, *params)


def train(model, steps=3, accumulation=1, forwards=1):
    """AdamW steps as the Trainer takes them (gradients set to None after each); ``accumulation`` backward passes a
    step, or ``forwards`` forward passes summed into one backward."""
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses, seed = [], 0
    for _ in range(steps):
        for _ in range(accumulation):
            parts = []
            for _ in range(forwards):
                parts.append(model(**batch(seed=seed)).loss)
                seed += 1
            (sum(parts) / accumulation).backward()
            losses += [p.item() for p in parts]
        optim.step()
        model.zero_grad()
    return losses, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def same(a, b) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][n], b[1][n]) for n in a[1])


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_replayed_layers_train_as_the_layers_do(kind):
    usual = train(lora_model(kind=kind))
    model, recorder = lora_model(kind=kind), StaticRecorder()
    graphs = lg.graph_layers(model, recorder)
    assert same(train(model), usual)
    assert graphs.report() == {"replayed": 3 * LAYERS, "as_usual": 0, "failed": None, "shape": [4, 12, 32]}
    [(modules, samples)] = recorder.given  # recorded once, every layer together, at the first call
    assert len(modules) == len(samples) == LAYERS
    hidden, mask, cos, sin, positions = samples[0]  # in the order of _split: the call's argument, then keywords sorted
    assert hidden.shape == (4, 12, 32) and mask.dim() == 4 and cos.shape == sin.shape and positions.shape == (1, 12)
    # the first layer's input needs no gradient here; every later one does (the layer before has trainable weights)
    assert [s[0].requires_grad for s in samples] == [False] + [True] * (LAYERS - 1)
    # each layer its own buffers: gemma-3's sliding-window layers take another mask and other positions
    assert len({id(t) for s in samples for t in s}) == 5 * LAYERS
    if kind == "gemma3":
        assert not torch.equal(samples[0][1], samples[1][1]) and not torch.equal(samples[0][2], samples[1][2])
    graphs.remove()
    assert all("forward" not in vars(layer) for layer in graphs.layers) and graphs.graphs is None
    model(**batch()).loss.backward()  # the layers' own forwards again, uncounted
    assert graphs.calls == {"replayed": 3 * LAYERS, "as_usual": 0}


def test_shared_buffers_would_give_gemma3_the_wrong_gradients():
    """The control of the test above: one mask and one set of positions shared by every layer (as the first version
    recorded them) trains gemma-3 otherwise, because each backward reads the last layer's."""
    def shared(modules, samples):
        return StaticRecorder()(modules, tuple((s[0], *samples[0][1:]) for s in samples))

    model = lora_model(kind="gemma3")
    lg.graph_layers(model, shared)
    assert not same(train(model), train(lora_model(kind="gemma3")))


def test_a_second_backward_before_the_optimizer_step_runs_as_usual(monkeypatch):
    """Gradient accumulation: a replayed backward would write into the gradient buffer the weights already hold."""
    usual = train(lora_model(), steps=2, accumulation=2)
    model = lora_model()
    graphs = lg.graph_layers(model, StaticRecorder())
    assert same(train(model, steps=2, accumulation=2), usual)
    assert graphs.calls == {"replayed": 2 * LAYERS, "as_usual": 2 * LAYERS}  # the first micro-batch of each step
    held = lg.LayerGraphs._replayable  # the control: without the check on held gradients, the sums go wrong
    monkeypatch.setattr(lg.LayerGraphs, "_replayable", lambda self, i: held(self, i) or any(
        p.grad is not None for p in self.trainable[i]))
    model = lora_model()
    lg.graph_layers(model, StaticRecorder())
    assert not same(train(model, steps=2, accumulation=2), usual)


def test_two_forwards_before_one_backward(monkeypatch):
    """The second forward of a layer whose replay still waits for its backward runs as usual: a replay would
    overwrite what that backward reads."""
    usual = train(lora_model(), steps=2, forwards=2)
    model = lora_model()
    graphs = lg.graph_layers(model, StaticRecorder())
    assert same(train(model, steps=2, forwards=2), usual)
    assert graphs.calls == {"replayed": 2 * LAYERS, "as_usual": 2 * LAYERS} and graphs.pending == [False] * LAYERS
    monkeypatch.setattr(lg.LayerGraphs, "_replay", lambda self, i, tensors: self.graphs[i][1](*tensors))
    model = lora_model()  # the control: no waiting replay is noticed
    lg.graph_layers(model, StaticRecorder())
    assert not same(train(model, steps=2, forwards=2), usual)


def test_calls_unlike_the_recorded_one_run_as_usual():
    model = lora_model()
    graphs = lg.graph_layers(model, StaticRecorder())
    model(**batch()).loss.backward()
    model.zero_grad()
    assert graphs.calls == {"replayed": LAYERS, "as_usual": 0}
    with torch.no_grad():
        model(**batch())  # no gradients: as usual
    model.eval()
    model(**batch())  # evaluation mode
    model.train()
    with model.disable_adapter():  # the adapters off: their weights need no gradient, the layers are the base's
        off = model(**batch()).logits
        with torch.no_grad():
            assert torch.equal(off, model(**batch()).logits)
    assert graphs.calls == {"replayed": LAYERS, "as_usual": 4 * LAYERS} and not graphs.warned  # none for training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(**batch(rows=2))  # fewer rows (an epoch's last batch): as usual, not warned
    assert graphs.calls["as_usual"] == 5 * LAYERS and not graphs.warned
    with pytest.warns(UserWarning, match=r"decoder layer 0 was called for training otherwise .*\[4, 12, 32\]"):
        with torch.autocast("cpu", dtype=torch.bfloat16):  # another autocast state: a training call, warned once
            model(**batch())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(**batch(length=10))  # another length
    assert graphs.calls == {"replayed": LAYERS, "as_usual": 7 * LAYERS}
    model.zero_grad()


def test_checkpointed_layers_run_as_usual():
    model = lora_model()
    model.get_base_model().activation_checkpointing_enable({"use_reentrant": False})
    graphs = lg.graph_layers(model, StaticRecorder())
    model(**batch()).loss.backward()
    assert graphs.calls == {"replayed": 0, "as_usual": LAYERS} and graphs.graphs is None


def test_a_failed_recording_warns_and_trains_as_usual():
    def fails(modules, samples):
        raise RuntimeError("operation not permitted when stream is capturing")

    usual = train(lora_model(), steps=2)
    model = lora_model()
    graphs = lg.graph_layers(model, fails)
    with pytest.warns(UserWarning, match="CUDA graphs failed .*operation not permitted"):
        assert same(train(model, steps=2), usual)
    assert graphs.report()["failed"].startswith("RuntimeError") and graphs.calls["replayed"] == 0


def test_out_of_memory_while_recording_is_raised():
    """train_arm's retry (every layer checkpointed, no graphs) needs the error, not a warning."""
    def full(modules, samples):
        raise torch.OutOfMemoryError("CUDA out of memory")

    model = lora_model()
    lg.graph_layers(model, full)
    with pytest.raises(torch.OutOfMemoryError):
        model(**batch())


def test_models_without_one_stack_of_decoder_layers():
    with pytest.raises(ValueError, match="no transformers decoder layers.*Speed.graphed = False"):
        lg.graph_layers(torch.nn.Linear(2, 2))
    mixed = torch.nn.ModuleList([lora_model().base_model.model, lora_model(kind="gemma3").base_model.model])
    with pytest.warns(UserWarning, match="layers of several kinds .*Gemma3DecoderLayer, LlamaDecoderLayer"):
        graphs = lg.graph_layers(mixed, StaticRecorder())
    assert graphs.failed and all("forward" not in vars(layer) for layer in graphs.layers)


def test_arguments_split_and_join_back():
    t, u, v = torch.zeros(1), torch.ones(2), torch.ones(3)
    spec, tensors, fixed = lg._split((t, None), {"pos": (u, v), "use_cache": False, "mask": t})
    assert [x is y for x, y in zip(tensors, (t, t, u, v))] == [True] * 4
    args, kwargs = lg._join(spec, tensors, fixed)
    assert args == [t, None] and kwargs["pos"] == (u, v) and kwargs["use_cache"] is False and kwargs["mask"] is t
    assert lg._split((t,), {"past_key_values": object()}) is None  # a cache object: not replayable
    # a fixed value's type is part of what a replay must match (True == 1 == 1.0 in Python)
    assert lg._key(*lg._split((t,), {"flag": True})) != lg._key(*lg._split((t,), {"flag": 1}))


def _update_gap(start: dict, usual: dict, graphed: dict) -> float:
    """How far the graphed training's weight updates are from the usual one's: |graphed - usual| / |usual update|,
    over every trainable weight."""
    flat = [torch.cat([w[n].flatten() - start[n].flatten() for n in start]) for w in (usual, graphed)]
    return float((flat[1] - flat[0]).norm() / flat[0].norm())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_on_a_gpu_replayed_graphs_train_as_the_layers_do(kind, monkeypatch):
    """torch's own recorder, bf16 as notebook 05 trains on a GPU: the same kernels replayed, so the same losses and
    weight updates to bf16 precision, with one micro-batch a step and with two. With two, the second runs as usual:
    torch's recorder hands its gradient buffers to the weights, and a second replayed backward would overwrite the
    first one's gradient -- which the last run, without that check, shows."""
    def run(graphed, accumulation):
        model = lora_model("cuda", torch.bfloat16, kind)
        start = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
        graphs = lg.graph_layers(model) if graphed else None
        optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        losses = []
        for step in range(4):
            for part in range(accumulation):
                loss = model(**batch(device="cuda", seed=step * accumulation + part)).loss
                (loss / accumulation).backward()
                losses.append(loss.item())
            optim.step()
            model.zero_grad()
        weights = {n: p.detach().float() for n, p in model.named_parameters() if p.requires_grad}
        return losses, start, weights, graphs

    gaps = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="recording the decoder layers")  # a failed recording: fail instead
        for accumulation in (1, 2):
            losses, start, usual, _ = run(False, accumulation)
            losses_g, _, weights_g, graphs = run(True, accumulation)
            assert graphs.report() == {"replayed": 4 * LAYERS, "as_usual": 4 * LAYERS * (accumulation - 1),
                                       "failed": None, "shape": [4, 12, 32]}
            assert losses_g == pytest.approx(losses, rel=1e-2)
            gaps[accumulation] = _update_gap(start, usual, weights_g)
        held = lg.LayerGraphs._replayable
        monkeypatch.setattr(lg.LayerGraphs, "_replayable", lambda self, i: held(self, i) or any(
            p.grad is not None for p in self.trainable[i]))
        gaps["unchecked"] = _update_gap(start, usual, run(True, 2)[2])
    # on an H200 (2026-12-01, the Llama): 0.0 and 0.0 (the same kernels, replayed), and 1.06 without the check
    assert gaps[1] < 0.01 and gaps[2] < 0.01 and gaps["unchecked"] > 0.5, gaps
