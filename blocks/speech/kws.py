"""speech.kws-cnn: a small keyword-spotting CNN over log-mel features computed inside the model's own graph."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
from pydantic import Field
from torch import nn

from blocks import MODEL_PROVIDER
from blocks.speech.audio import SAMPLE_RATE
from blocks.speech.features import DEFAULT_SPEC, compute_features, log_mel_module
from blocks.speech.synth import AudioClips
from builder.errors import DataError
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from blocks.speech.personalise import OwnClips
    from runtime.context import StepContext
    from runtime.training import WithSoftmax

log = logging.getLogger(__name__)


def _ds_block(channels: int) -> nn.Sequential:
    """A depthwise-separable convolution (DS-CNN, Zhang et al. 2017): depthwise 3×3, then pointwise 1×1."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
    )


class SubSpectralNorm(nn.Module):
    """Batch normalisation per frequency sub-band (Chang et al. 2021): low and high bands keep their own statistics."""

    def __init__(self, channels: int, bands: int) -> None:
        super().__init__()
        self.bands = bands
        self.bn = nn.BatchNorm2d(channels * bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, f, t = x.shape
        return self.bn(x.reshape(n, c * self.bands, f // self.bands, t)).reshape(n, c, f, t)


class BcResBlock(nn.Module):
    """A broadcasted-residual block (BC-ResNet, Kim et al. 2021): a frequency-wise depthwise conv over the 2-D map,
    then a temporal depthwise conv on its frequency average, broadcast back over every band. The transition block
    changes the channel count (and may halve the frequency axis) and has no identity shortcut."""

    def __init__(self, c_in: int, c_out: int, freq: int, dilation: int, stride: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.transition = c_in != c_out or stride != 1
        self.enter = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())
            if self.transition
            else nn.Identity()
        )
        out_freq = (freq - 1) // stride + 1
        self.freq_dw = nn.Conv2d(c_out, c_out, (3, 1), stride=(stride, 1), padding=(1, 0), groups=c_out, bias=False)
        # Five sub-bands as in the paper where the band count divides evenly; one (plain batch norm) where not.
        self.ssn = SubSpectralNorm(c_out, 5 if out_freq % 5 == 0 else 1)
        self.temporal = nn.Sequential(
            nn.Conv2d(c_out, c_out, (1, 3), padding=(0, dilation), dilation=(1, dilation), groups=c_out, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 1, bias=False),
            nn.Dropout2d(dropout),
        )
        self.out_freq = out_freq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        entered = self.enter(x)
        aux = self.ssn(self.freq_dw(entered))
        out = aux + self.temporal(aux.mean(2, keepdim=True))
        return torch.relu(out if self.transition else out + x)


def _bc_resnet(n_labels: int, width: int, freq: int) -> nn.Sequential:
    """BC-ResNet's layout: a 5×5 conv, stages of 2, 2, 4, 4 blocks at width × (1, 1.5, 2, 2.5) channels, the second
    and third halving the frequency axis, temporal dilations 1, 2, 4, 8; a depthwise conv over what is left of the
    frequency axis, a 1×1 conv, average over time and a 1×1 classifier. `width` 8 is BC-ResNet-1."""
    stem = 2 * width
    layers: list[nn.Module] = [nn.Conv2d(1, stem, 5, stride=(2, 1), padding=2), nn.BatchNorm2d(stem), nn.ReLU()]
    f, c_in = (freq - 1) // 2 + 1, stem
    for i, (mult, n, dilation) in enumerate(((2, 2, 1), (3, 2, 2), (4, 4, 4), (5, 4, 8))):
        c_out = width * mult // 2
        for j in range(n):
            block = BcResBlock(c_in if j == 0 else c_out, c_out, f, dilation, 2 if j == 0 and i in (1, 2) else 1)
            layers.append(block)
            f, c_in = block.out_freq, c_out
    head = 4 * width
    return nn.Sequential(
        *layers,
        nn.Conv2d(c_in, c_in, (f, 5), padding=(0, 2), groups=c_in),
        nn.Conv2d(c_in, head, 1, bias=False),
        nn.BatchNorm2d(head),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(head, n_labels),
    )


Arch = Literal["ds-cnn", "bc-resnet"]
ARCHITECTURES: tuple[str, ...] = get_args(Arch)


class KwsNet(nn.Module):
    """Waveform (batch, samples) → class logits: log-mel, normalisation, then a DS-CNN (a strided conv, DS blocks,
    pooling) or a BC-ResNet. With `utterance_norm` each clip's own mean level in every band is taken away first;
    `answer_bias` (one number per class) is added to the logits when answering, never while training."""

    def __init__(
        self,
        n_labels: int,
        channels: int = 64,
        blocks: int = 4,
        features: dict | None = None,
        arch: str = "ds-cnn",
        utterance_norm: bool = False,
        answer_bias: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.utterance_norm = utterance_norm
        if answer_bias is not None and len(answer_bias) != n_labels:
            raise ValueError(f"answer_bias needs one number per class ({n_labels}), got {len(answer_bias)}")
        # Not in the state dict: it is a setting of the answer (kept beside the weights), not a weight.
        bias = torch.tensor(answer_bias or [0.0] * n_labels, dtype=torch.float32)
        self.register_buffer("answer_bias", bias, persistent=False)
        self.features = log_mel_module(features or DEFAULT_SPEC)
        self.norm = nn.BatchNorm2d(1)
        if arch == "bc-resnet":
            with torch.no_grad():
                freq = int(self.features(torch.zeros(1, SAMPLE_RATE)).shape[2])
            self.body = _bc_resnet(n_labels, channels, freq)
        elif arch == "ds-cnn":
            self.body = nn.Sequential(
                nn.Conv2d(1, channels, (10, 4), stride=(2, 2), padding=(5, 1)),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
                *[_ds_block(channels) for _ in range(blocks)],
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Dropout(0.2),
                nn.Linear(channels, n_labels),
            )
        else:
            raise ValueError(f"unknown keyword-spotter architecture {arch!r}: use one of {', '.join(ARCHITECTURES)}")

    def forward(self, wave_: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(wave_))

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        if self.utterance_norm:
            # Cepstral mean normalisation: a band's level over the whole clip is the voice's, the microphone's or the
            # line's colour, not the word; without it, the same word from an unheard voice looks like another word.
            feats = feats - feats.mean(dim=3, keepdim=True)
        logits = self.body(self.norm(feats))
        # A prior on the answer (logit adjustment): the loss never sees it, so training cannot learn it away.
        return logits if self.training else logits + self.answer_bias


class OnFeatures(nn.Module):
    """The trainable part of a KwsNet, fed precomputed log-mel features (they never change during training), with
    SpecAugment masks while training. The masks' randomness is a seed and a step count kept as buffers, so a
    checkpoint carries it and a verifier replaying a segment draws the very same masks."""

    def __init__(self, net: KwsNet, spec_augment: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.net = net
        self.spec_augment = spec_augment
        self.register_buffer("mask_seed", torch.tensor(seed, dtype=torch.int64))
        self.register_buffer("mask_step", torch.tensor(0, dtype=torch.int64))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.training and self.spec_augment:
            from blocks.speech.augment import spec_augment

            g = torch.Generator().manual_seed(int(self.mask_seed) * 1_000_003 + int(self.mask_step))
            self.mask_step += 1
            feats = spec_augment(feats, g)
        return self.net.classify(feats)


@dataclass
class AudioClassifierModel:
    """A trained keyword spotter: weights, labels, clip length and metrics."""

    state: dict[str, np.ndarray]
    channels: int
    blocks: int
    labels: list[str]
    samples: int
    metrics: dict[str, Any]
    arch: str = "ds-cnn"
    eval_clips: np.ndarray = field(default_factory=lambda: np.zeros((0, SAMPLE_RATE), np.float32))
    features: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPEC))
    utterance_norm: bool = False
    unknown_bias: float = 0.0

    def torch_module(self) -> WithSoftmax:
        # A model pickled in the step cache before feature settings existed used the defaults (one pickled before
        # `arch`, `utterance_norm` or `unknown_bias` existed reads the class default: ds-cnn, none of them).
        from runtime.training import WithSoftmax

        spec = getattr(self, "features", DEFAULT_SPEC)
        bias = answer_bias(self.labels, self.unknown_bias)
        net = KwsNet(len(self.labels), self.channels, self.blocks, spec, self.arch, self.utterance_norm, bias)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in self.state.items()})
        return WithSoftmax(net).eval()

    def parity_inputs(self) -> list[Any]:
        return [{"samples": c} for c in self.eval_clips]

    def reference_outputs(self, items: list[Any]) -> np.ndarray:
        with torch.inference_mode():
            return self.torch_module()(torch.from_numpy(np.stack([i["samples"] for i in items]))).numpy()

    def export(self, bundle_dir: Path) -> dict[str, Any]:
        """model.onnx takes the waveform itself: the features are part of the graph."""
        from runtime.export import write_onnx

        return {
            "type": "audio-classifier",
            "model_file": write_onnx(
                self.torch_module(), torch.zeros((1, self.samples)), "waveform", "probabilities", bundle_dir
            ),
            "labels": list(self.labels),
            "sample_rate": SAMPLE_RATE,
            "samples": self.samples,
        }


class KwsParams(BlockParams):
    arch: Arch = Field(
        "ds-cnn",
        description="The network: a depthwise-separable CNN (ds-cnn) or a broadcasted-residual net (bc-resnet)",
    )
    epochs: int = Field(20, ge=1, le=1000, description="Passes over the training clips")
    lr: float = Field(0.003, gt=0.0, le=1.0, description="Learning rate of the Adam optimiser")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="The learning rate throughout (constant) or falling to 0 along a half cosine"
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Clips per optimisation step")
    channels: int = Field(
        64, ge=4, le=512, description="Channels of the convolutions (bc-resnet: of its first stage; 8 is BC-ResNet-1)"
    )
    blocks: int = Field(4, ge=1, le=12, description="Depthwise-separable blocks (ds-cnn; bc-resnet has its own 12)")
    spec_augment: bool = Field(True, description="Mask random frequency bands and time spans while training")
    utterance_norm: bool = Field(
        False,
        description="Take each clip's own mean level out of every frequency band before the network (cepstral mean "
        "normalisation): steadier on voices, microphones and phone lines it never heard",
    )
    unknown_bias: float = Field(
        0.0,
        ge=0.0,
        le=5.0,
        description="Added to the `_unknown_` class's score when answering (log of a prior factor): more other words "
        "answered `_unknown_`, at the cost of a few commands",
    )
    seed: int = Field(0, ge=0, description="Random seed: the same seed and data give the same model")
    own_clips_path: str = Field(
        "",
        description="Your own recordings to fine-tune on: a folder or .zip with one sub-folder per word ('' for none)",
    )
    own_epochs: int = Field(5, ge=1, le=100, description="Fine-tuning passes over your own recordings")


def answer_bias(labels: list[str], unknown_bias: float) -> list[float]:
    """One number per class to add to its logit when answering: `unknown_bias` on `_unknown_`, 0 elsewhere."""
    from blocks.speech.synth import UNKNOWN

    return [unknown_bias if name == UNKNOWN else 0.0 for name in labels]


def optimiser(net: nn.Module, params: KwsParams) -> torch.optim.Optimizer:
    """Adam over the net's weights at the params' learning rate and schedule."""
    from runtime.training import cosine_groups

    if params.lr_schedule == "cosine":
        return torch.optim.Adam(cosine_groups(net.parameters(), params.lr, params.epochs))
    return torch.optim.Adam(net.parameters(), lr=params.lr)


def _predict(net: KwsNet, clips: np.ndarray, device: str) -> np.ndarray:
    """The class each clip (a waveform) is given by the net."""
    from runtime.training import predicted_classes

    return predicted_classes(net, torch.from_numpy(clips).to(device)).cpu().numpy()


def held_out_metrics(net: KwsNet, data: AudioClips, device: str) -> dict[str, Any]:
    """What the test clips say beyond accuracy: which split they are, accuracy when the same clips come through a
    telephone line, and the rates at which other words are answered `_unknown_` and commands wrongly are."""
    from blocks.speech.augment import telephone
    from blocks.speech.synth import SILENCE, UNKNOWN

    test_engine = data.source.get("test_engine") or ""
    split = f"held-out engine ({test_engine})" if test_engine else "held-out voices"
    if len(data.test_y) == 0:
        return {"eval_split": split}
    net = net.eval()
    phone = _predict(net, np.stack([telephone(c) for c in data.test_x]).astype(np.float32), device)
    out: dict[str, Any] = {"eval_split": split, "phone_line_accuracy": round(float(np.mean(phone == data.test_y)), 6)}
    clean = _predict(net, data.test_x, device)
    of_clip = data.source.get("test_engine_of_clip") or []
    if len(of_clip) == len(clean):  # which engine spoke each test clip: one engine may be learnt far better
        engines = np.asarray(of_clip)
        out["accuracy_by_engine"] = {e: round(float(np.mean(clean[engines == e] == data.test_y[engines == e])), 6)
                                     for e in sorted(set(of_clip) - {""})}  # fmt: skip
    if UNKNOWN in data.labels:
        u = data.labels.index(UNKNOWN)
        commands = [i for i, name in enumerate(data.labels) if name not in (UNKNOWN, SILENCE)]
        others, words = data.test_y == u, np.isin(data.test_y, commands)
        if others.any():
            out["unknown_rejection"] = round(float(np.mean(clean[others] == u)), 6)
        if words.any():
            out["commands_rejected"] = round(float(np.mean(clean[words] == u)), 6)
    return out


def fine_tune(
    net: torch.nn.Module,
    own_x: np.ndarray,
    own_y: np.ndarray,
    base_feats: torch.Tensor,
    base_y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    spec_augment: bool,
    seed: int,
    device: str,
) -> float:
    """Fine-tune a trained KwsNet in place on own clips (each also in `COPIES` augmented copies) mixed with as many
    of its training examples (`base_feats`, drawn at random), at learning rate `lr`; the last epoch's mean loss."""
    from blocks.speech.augment import Augment, augment
    from blocks.speech.personalise import COPIES
    from runtime.training import fit_quietly

    rng = np.random.default_rng(seed)
    cfg = Augment()
    waves = np.stack([*own_x, *(augment(x, rng, cfg) for x in own_x for _ in range(COPIES))])
    y = np.concatenate([own_y, np.repeat(own_y, COPIES)]).astype(np.int64)
    with torch.no_grad():  # not inference_mode: these tensors are trained on
        feats = torch.cat([net.features(torch.from_numpy(waves[i : i + 256]).to(device))
                           for i in range(0, len(waves), 256)])  # fmt: skip
    # The synthetic base, as many clips as the own ones: what keeps the model from forgetting the other voices.
    pick = torch.from_numpy(rng.choice(len(base_y), size=min(len(y), len(base_y)), replace=False)).to(device)
    x = torch.cat([feats, base_feats[pick]])
    y_all = torch.cat([torch.from_numpy(y).to(device), base_y[pick]])
    trainable = OnFeatures(net, spec_augment, seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss = fit_quietly(trainable, opt, x, y_all, epochs=epochs, batch_size=batch_size, seed=seed, device=device)
    net.eval()
    return loss


def personalise(
    ctx: StepContext,
    net: KwsNet,
    own: OwnClips,
    labels: list[str],
    base: tuple[torch.Tensor, torch.Tensor],
    params: KwsParams,
) -> dict[str, Any]:
    """Fine-tune the trained net on the user's own recordings (with its training features as a base); the metrics
    that say so."""
    from blocks.speech.personalise import LR_FACTOR

    # This runs here, on the coordinator, also when `fit` trained on a rented machine: it is short, and the user's
    # voice never goes to a rented machine.
    ctx.progress(0, 1, f"fine-tuning on {len(own.words)} own recordings")
    if own.missing:
        log.info("no own recordings of %s: these words keep the synthetic training only", ", ".join(own.missing))
    own_y = np.array([labels.index(w) for w in own.words], dtype=np.int64)
    fine_tune(net, own.clips, own_y, *base, epochs=params.own_epochs, lr=params.lr * LR_FACTOR,
              batch_size=params.batch_size, spec_augment=params.spec_augment, seed=params.seed,
              device=ctx.device)  # fmt: skip
    ctx.progress(1, 1, f"fine-tuned on {len(own.words)} own recordings")
    return {
        "personalised": True,
        "own_clips": len(own.words),
        "own_words_missing": own.missing,
        "own_epochs": params.own_epochs,
        "personal_fine_tune_on": "coordinator",
    }


@register_block
class KwsCnn(Block):
    id = "speech.kws-cnn"
    version = "1.0.0"
    kind = Kind.MODEL
    domain = "speech"
    inputs = (Port("clips", PortType.AUDIO_CLIPS, "labelled 16 kHz clips"),)
    outputs = (
        Port("model", PortType.MODEL, "trained keyword spotter (waveform in)"),
        Port("metrics", PortType.METRICS, "accuracy on held-out voices, confusion matrix"),
    )
    Params = KwsParams
    price = Price(3 * 10**15, PriceUnit.RUN)  # 0.003 AIC per run
    call_price = Price(3 * 10**14, PriceUnit.CALLS_1K)
    provider = MODEL_PROVIDER
    license = "Apache-2.0"
    description = "Trains a DS-CNN or BC-ResNet keyword spotter on log-mel features computed inside the exported model."
    trains = True

    def estimate_seconds(self, params: BlockParams) -> float:
        assert isinstance(params, KwsParams)
        return 4.0 * params.epochs

    @staticmethod
    def _own_root(params: KwsParams, base_dir: Path) -> Path:
        p = Path(params.own_clips_path)
        return p if p.is_absolute() else base_dir / p

    def check(self, params: BlockParams, base_dir: Path) -> list[tuple[str, str]]:
        from blocks.speech.personalise import read_own_clips

        assert isinstance(params, KwsParams)
        # (a folder outside the pipeline's is refused before this, like every `…path` param: builder/pipeline.py)
        if not params.own_clips_path:
            return []
        try:  # the model's words and clip length come with its input: the run checks those
            read_own_clips(self._own_root(params, base_dir))
        except DataError as exc:
            return [("own_clips_path", str(exc))]
        return []

    def fingerprint(self, params: BlockParams, base_dir: Path) -> str:
        from blocks.folders import content_fingerprint

        assert isinstance(params, KwsParams)
        # The recordings' content, not their path: a re-recorded word is a new step, a moved folder is not.
        return content_fingerprint(self._own_root(params, base_dir)) if params.own_clips_path else ""

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        from runtime.evaluation import wav_base64
        from runtime.training import classifier_metrics, fit

        assert isinstance(params, KwsParams)
        data: AudioClips = inputs["clips"]
        d = ctx.device
        own = None
        # Read before training, so that a bad recording stops the step at once; a verifier replays `fit` only.
        if params.own_clips_path and ctx.verify_epochs is None:
            from blocks.speech.personalise import read_own_clips

            own_root = self._own_root(params, ctx.base_dir)
            own = read_own_clips(own_root, data.labels, data.train_x.shape[1] / SAMPLE_RATE)
        # Features from speech.log-mel when it precedes this block, else the default ones; either way they come
        # from the digitized-data cache when these clips were seen before.
        feats = data.features or compute_features(ctx.shards, data, DEFAULT_SPEC, d, ctx.progress)
        torch.manual_seed(params.seed)
        net = KwsNet(
            len(data.labels), params.channels, params.blocks, feats.spec, params.arch, params.utterance_norm,
            answer_bias(data.labels, params.unknown_bias),
        ).to(d)  # fmt: skip
        x, tx = torch.from_numpy(feats.train).to(d), torch.from_numpy(feats.test).to(d)
        y, ty = torch.from_numpy(data.train_y).to(d), torch.from_numpy(data.test_y).to(d)
        trainable = OnFeatures(net, params.spec_augment, params.seed)
        opt = optimiser(net, params)
        loss_value = fit(
            ctx, trainable, opt, (x, y, tx, ty), epochs=params.epochs, batch_size=params.batch_size, seed=params.seed
        )
        personal = personalise(ctx, net, own, data.labels, (x, y), params) if own is not None else {}
        files = data.source.get("test_files") or []

        def file_of(i: int) -> dict[str, str]:  # the user's file, when the clips came from their folder
            return {"file": files[i]} if i < len(files) else {}

        metrics = {
            **classifier_metrics(
                trainable,
                (x, y, tx, ty),
                len(data.labels),
                loss_value,
                params.epochs,
                labels=list(data.labels),
                example=lambda i: {"audio_wav": wav_base64(data.test_x[i], SAMPLE_RATE), **file_of(i)},
            ),  # fmt: skip
            **held_out_metrics(net, data, d),
            **personal,
        }
        net = net.cpu()
        model = AudioClassifierModel(
            state={k: v.detach().cpu().numpy() for k, v in net.state_dict().items()},
            channels=params.channels,
            blocks=params.blocks,
            arch=params.arch,
            utterance_norm=params.utterance_norm,
            unknown_bias=params.unknown_bias,
            labels=list(data.labels),
            samples=int(data.train_x.shape[1]),
            metrics=metrics,
            eval_clips=data.test_x,
            features=dict(feats.spec),
        )
        return {"model": model, "metrics": metrics}
