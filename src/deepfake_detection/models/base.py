"""The interface every detector implements, and the training logic they share."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, Metric

from deepfake_detection.metrics.binary import binary_metrics
from deepfake_detection.models.freeze import (
    FreezeSpec,
    apply_freeze,
    count_parameters,
    frozen_batchnorms,
    nothing_frozen_warning,
)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class BaseDetector(L.LightningModule):
    """A binary Real/Fake classifier producing one logit per image (Fake = positive).

    Subclasses build `net`, a plain `nn.Module` whose `state_dict` is what gets shipped, and
    say which of its modules are the ordered feature blocks that freeze strategies act on.
    """

    model_name: str = "detector"
    #: The distribution its backbone comes from (`timm`, `torchvision`, ...), whose version
    #: a result's protocol record names; None for a network of this package alone.
    backbone_library: str | None = None
    #: What a fit's training and validation steps run on their inputs: None, the whole
    #: network on images; for a fit from stored features, the wrapper of the network that
    #: `training.cached_fit` installs (`FeatureForward`, the trainable rest on features).
    step_forward: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: The dataclass of its `model.*` keys (`deepfake_detection.rules.setting` fields), given
    #: when it registers (`models.registry.register`): the config is checked against it once,
    #: when a command starts, so `__init__` trusts it.
    settings: type | None = None

    def __init__(
        self,
        net: nn.Module,
        freeze: Mapping | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.channels_last = channels_last
        if channels_last:
            # ~3x faster convolutions on CPU for MobileNetV2, and the fast path for AMP on GPU.
            self.net = self.net.to(memory_format=torch.channels_last)
        self.freeze_spec = FreezeSpec.from_config(freeze)
        apply_freeze(self.net, self.feature_blocks(), self.freeze_spec, self.model_name)
        #: BatchNorm layers kept in eval mode while training (their weights are frozen).
        self.frozen_batchnorms = frozen_batchnorms(self.net)
        self.criterion = nn.BCEWithLogitsLoss()
        self.train_metrics = binary_metrics("train")
        self.val_metrics = binary_metrics("val")
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.val_auroc_best = MaxMetric()
        self.val_auroc_best.persistent(True)  # a resumed run keeps its best score
        #: Per-epoch train/val loss and accuracy, for learning curves; kept in checkpoints.
        self.history: dict[int, dict[str, float]] = {}

    @abstractmethod
    def feature_blocks(self) -> Sequence[nn.Module]:
        """Feature-extractor blocks of `net`, input to output; the rest of `net` is the head."""

    @abstractmethod
    def head_pool(self, features: torch.Tensor) -> torch.Tensor:
        """The head's parameter-free start (global pooling, flattening) on the blocks' output."""

    @abstractmethod
    def head_rest(self, pooled: torch.Tensor) -> torch.Tensor:
        """The rest of the head: `net(x)` is `head_rest(head_pool(blocks(x)))`."""

    @property
    def display_name(self) -> str:
        """How runs name this detector (logs, hparams, compare): the architecture, and for
        a family of models, which one (`timm:resnet50`)."""
        return self.model_name

    def frozen_depth(self) -> int:
        """How many leading feature blocks the freeze setting leaves without trainable weights:
        their output never changes while training, so it can be computed once."""
        depth = 0
        for block in self.feature_blocks():
            if any(p.requires_grad for p in block.parameters()):
                break
            depth += 1
        return depth

    def feature_prefix(self, depth: int) -> nn.Module:
        """The frozen part of `net` up to `depth` blocks: what a feature cache stores.

        With every block frozen it includes the head's pooling too, which makes the stored
        features a vector per image (1,280 floats for MobileNetV2) instead of a feature map.
        """
        blocks = list(self.feature_blocks())
        parts: list[nn.Module] = list(blocks[:depth])
        if depth == len(blocks):
            parts.append(_Call(self.head_pool))
        return nn.Sequential(*parts)

    def features_to_logits(self, features: torch.Tensor, depth: int) -> torch.Tensor:
        """Logits from `feature_prefix(depth)`'s output: the trainable rest of `net`."""
        blocks = list(self.feature_blocks())
        if depth < len(blocks):
            if self.channels_last and features.dim() == 4:
                features = features.contiguous(memory_format=torch.channels_last)
            for block in blocks[depth:]:
                features = block(features)
            features = self.head_pool(features)
        return self.head_rest(features).squeeze(-1)

    def freeze_warning(self) -> str | None:
        """A line for the user when the freeze setting leaves every block trainable."""
        return nothing_frozen_warning(self.freeze_spec, len(self.feature_blocks()), self.model_name)

    def parameter_counts(self) -> dict[str, int]:
        trainable, total = count_parameters(self.net)
        return {"params/trainable": trainable, "params/total": total}

    def flops_per_image(self, image_size: int) -> int:
        """Floating-point operations of one forward pass on one image, counted by torch."""
        from torch.utils.flop_counter import FlopCounterMode

        was_training = self.training
        self.eval()
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self(torch.zeros(1, 3, image_size, image_size))
        finally:
            self.train(was_training)
        return counter.get_total_flops()

    def on_fit_start(self) -> None:
        # `trainer.sync_batchnorm` swaps every BatchNorm for a SyncBatchNorm (with the same
        # parameters) just before fitting: find the frozen ones again among the new modules.
        self.frozen_batchnorms = frozen_batchnorms(self.net)

    def _keep_frozen_bn_in_eval(self) -> None:
        for bn in self.frozen_batchnorms:
            bn.eval()

    def train(self, mode: bool = True) -> BaseDetector:
        super().train(mode)
        self._keep_frozen_bn_in_eval()
        return self

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Lightning restores module modes by setting `.training` directly after validation,
        # bypassing `train()`, and a fit resumed mid-epoch skips the epoch-start hooks: so
        # re-assert eval mode right before every training step.
        self._keep_frozen_bn_in_eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images).squeeze(-1)

    @property
    def cached_depth(self) -> int | None:
        """While a fit reads a feature cache, the frozen depth its batches were computed at;
        else None."""
        return getattr(self.step_forward, "depth", None)

    def _step(self, batch: Sequence[torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's loss and P(Fake) of each image, after updating the split's metrics."""
        images, targets = batch[0], batch[1]
        logits = (self.step_forward or self)(images)
        loss = self.criterion(logits, targets)
        probs = torch.sigmoid(logits.detach().float())  # fp16 would tie confident scores
        getattr(self, f"{split}_metrics").update(probs, targets.long())
        getattr(self, f"{split}_loss").update(loss.detach(), weight=targets.numel())
        return loss, probs

    def _log_epoch(self, split: str) -> dict[str, torch.Tensor]:
        metrics, loss = getattr(self, f"{split}_metrics"), getattr(self, f"{split}_loss")
        values = {f"{split}/loss": loss.compute(), **metrics.compute()}
        self.log_dict(values, prog_bar=split == "val")
        metrics.reset()
        loss.reset()
        return values

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        # The scores go to callbacks (`on_validation_batch_end`): per-source validation.
        return self._step(batch, "val")[1]

    def _record_history(self, values: Mapping[str, torch.Tensor]) -> None:
        row = self.history.setdefault(self.current_epoch, {})
        row.update(
            {k: float(v) for k, v in values.items() if k.rsplit("/", 1)[-1] in {"loss", "acc"}}
        )

    def on_train_epoch_end(self) -> None:
        self._record_history(self._log_epoch("train"))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            # Its few batches only check that validation runs. They often hold one class,
            # where AUROC is undefined, and must not count towards the best score.
            self.val_metrics.reset()
            self.val_loss.reset()
            return
        values = self._log_epoch("val")
        self._record_history(values)
        self.val_auroc_best.update(values["val/auroc"])
        self.log("val/auroc_best", self.val_auroc_best.compute(), prog_bar=True)

    def _train_epoch_metrics(self) -> dict[str, Metric]:
        return {"loss": self.train_loss, **dict(self.train_metrics.items(keep_base=True))}

    def train_epoch_state(self) -> dict[str, dict]:
        """The train metrics accumulated so far this epoch, for a checkpoint saved mid-epoch."""
        return {
            name: {"update_count": metric.update_count, "states": metric.metric_state}
            for name, metric in self._train_epoch_metrics().items()
        }

    def load_train_epoch_state(self, state: Mapping[str, dict]) -> None:
        """Continue the epoch's train metrics where `train_epoch_state` left them."""
        for name, metric in self._train_epoch_metrics().items():
            saved = state[name]
            for key, value in saved["states"].items():
                setattr(metric, key, value)
            metric._update_count = saved["update_count"]
            metric._computed = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = {int(epoch): dict(row) for epoch, row in self.history.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = {int(e): dict(row) for e, row in checkpoint.get("history", {}).items()}

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise RuntimeError(f"{type(self).__name__} was built without an optimizer")
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch"},
        }


class _Call(nn.Module):
    """A parameter-free function as a module, so it can sit in an `nn.Sequential`."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)
