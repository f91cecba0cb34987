"""LightningModule: a torch.nn.Module that also holds its training logic, hooks and logging."""
from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from ember._hparams import load_from_checkpoint as _load_from_checkpoint, save_hyperparameters as _save_hparams
from ember._hparams import snapshot as _snapshot
from ember._utils import AttributeDict, is_overridden, move_data_to_device

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


class LightningModule(nn.Module):
    """Organise a model: ``forward``, the ``*_step`` methods, ``configure_optimizers`` and hooks.

    >>> import torch, ember
    >>> class LinearRegression(ember.LightningModule):
    ...     def __init__(self, lr: float = 0.1):
    ...         super().__init__()
    ...         self.save_hyperparameters()
    ...         self.linear = torch.nn.Linear(1, 1)
    ...     def forward(self, x):
    ...         return self.linear(x)
    ...     def training_step(self, batch, batch_idx):
    ...         x, y = batch
    ...         loss = torch.nn.functional.mse_loss(self(x), y)
    ...         self.log("train_loss", loss)
    ...         return loss
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
    >>> LinearRegression().hparams.lr
    0.1
    """

    # Properties TorchScript must not compile (``to_torchscript(method="script")``); a subclass adds its own
    # with ``__jit_unused_properties__ = LightningModule.__jit_unused_properties__ + ["name"]``.
    __jit_unused_properties__ = [
        "trainer", "device", "dtype", "current_epoch", "global_step", "global_rank", "local_rank",
        "logger", "loggers", "on_gpu", "hparams", "hparams_initial", "strict_loading", "fabric",
    ]

    # class-level defaults too: a module pickled whole by an older ember, unpickled here, has no such attributes
    _fabric = None
    _fabric_optimizers = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Optional["Trainer"] = None
        self._fabric: Any = None  # set by Fabric.setup: then self.log, optimizers(), backward go through Fabric
        self._fabric_optimizers: list = []
        self._hparams: AttributeDict = AttributeDict()
        self._hparams_initial: AttributeDict = AttributeDict()
        self._current_fx: Optional[str] = None  # the hook running now: decides self.log defaults
        self._log_store: Any = None  # set by the Trainer while a loop runs
        self.automatic_optimization: bool = True
        self.example_input_array: Any = None
        self._jit_is_scripting: bool = False  # set by ember.export while TorchScript inspects the module
        self._strict_loading: Optional[bool] = None  # None: not set by the user (strict)

    # --- what the trainer owns ------------------------------------------------------------------
    @property
    def trainer(self) -> "Trainer":
        if self._fabric is not None:  # set up by Fabric: self.trainer.X reads fabric.X, as in Lightning
            return _FabricAsTrainer(self._fabric)  # type: ignore[return-value]
        if self._trainer is None and not self._jit_is_scripting:
            raise RuntimeError(
                f"{type(self).__name__} is not attached to a Trainer: `self.trainer` exists only while "
                "`trainer.fit/validate/test/predict` runs. Pass the model to one of them first. (To script or "
                "trace a model outside a Trainer, call `model.to_torchscript(method='script' or 'trace')`.)"
            )
        return self._trainer

    @trainer.setter
    def trainer(self, trainer: Optional["Trainer"]) -> None:
        self._trainer = trainer

    @property
    def fabric(self) -> Any:
        """The ``Fabric`` that set this module up (``fabric.setup(model, ...)``), or None under a Trainer."""
        return self._fabric

    @fabric.setter
    def fabric(self, fabric: Any) -> None:
        for child in self.children():
            if isinstance(child, LightningModule):
                child.fabric = fabric
        self._fabric = fabric

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for t in self.parameters():
            return t.dtype
        return torch.get_default_dtype()

    @property
    def current_epoch(self) -> int:
        return self._trainer.current_epoch if self._trainer is not None else 0

    @property
    def global_step(self) -> int:
        return self._trainer.global_step if self._trainer is not None else 0

    @property
    def global_rank(self) -> int:
        return self._trainer.global_rank if self._trainer is not None else 0

    @property
    def local_rank(self) -> int:
        return self._trainer.local_rank if self._trainer is not None else 0

    @property
    def logger(self) -> Any:
        if self._fabric is not None:
            return self._fabric.loggers[0] if self._fabric.loggers else None
        return self._trainer.logger if self._trainer is not None else None

    @property
    def loggers(self) -> list:
        if self._fabric is not None:
            return self._fabric.loggers
        return self._trainer.loggers if self._trainer is not None else []

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def strict_loading(self) -> bool:
        """Whether loading a checkpoint (``trainer.fit(ckpt_path=...)``, ``load_from_checkpoint``) requires its
        ``state_dict`` keys to match the model's exactly (the default). Set ``self.strict_loading = False`` in
        ``__init__`` to load a checkpoint with missing or extra entries (e.g. a frozen backbone left out)."""
        return self.__dict__.get("_strict_loading") in (None, True)

    @strict_loading.setter
    def strict_loading(self, strict: bool) -> None:
        self._strict_loading = strict

    # --- hyperparameters --------------------------------------------------------------------------
    def save_hyperparameters(self, *args: Any, ignore: Union[str, Iterable[str], None] = None,
                             frame: Any = None, logger: bool = True) -> None:
        """Record the ``__init__`` arguments in ``self.hparams``, in every checkpoint and in the loggers.

        ``args``: names of ``__init__`` arguments to keep (default: all), or one dict/Namespace to record
        instead. ``ignore``: names to leave out. ``logger=False``: do not send them to the loggers.

        ``self.hparams`` holds each value as given (``self.hparams.net is net``). A checkpoint stores plain data
        as it is; a class, function, ``functools.partial``, enum or dataclass as a description (its import path
        and plain arguments), which ``load_from_checkpoint`` rebuilds only when asked (``import_objects=True``);
        an ``nn.Module`` not at all (its weights are in the state dict: pass it in ``ignore=``). A model built by
        ``LightningCLI`` stores an argument built from a ``class_path`` as that config, as Lightning does.
        """
        _save_hparams(self, args, ignore, frame or inspect.currentframe().f_back)
        self._log_hyperparams = logger

    @property
    def hparams(self) -> AttributeDict:
        """The saved hyperparameters; you may change them (checkpoints store the current values)."""
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        """The hyperparameters as first saved (a copy: changing it changes nothing)."""
        return _snapshot(self._hparams_initial)

    # --- logging ----------------------------------------------------------------------------------
    def log(self, name: str, value: Any, prog_bar: bool = False, logger: Optional[bool] = None,
            on_step: Optional[bool] = None, on_epoch: Optional[bool] = None, reduce_fx: Any = "mean",
            enable_graph: bool = False, sync_dist: bool = False, sync_dist_group: Any = None,
            add_dataloader_idx: bool = True, batch_size: Optional[int] = None,
            metric_attribute: Optional[str] = None, rank_zero_only: bool = False) -> None:
        """Record a scalar (a number, a 0-d tensor or a torchmetrics ``Metric``) for this step/epoch.

        Defaults follow the hook: per step in ``training_step`` and the batch hooks, per epoch
        (a mean weighted by batch size) in ``validation_step``/``test_step`` and epoch hooks.
        Values stay on the device; nothing synchronises until a logger or the progress bar reads them.
        Under Fabric (the module set up with ``fabric.setup``) the value goes to ``fabric.log_dict`` at once.
        """
        if self._fabric is not None:
            self._log_through_fabric({name: value}, logger)
            return
        store = self._log_store
        if store is None:
            warnings.warn(
                f"self.log({name!r}, ...) was called outside of a Trainer loop and is ignored. "
                "Call it from training_step, validation_step, test_step or a hook the Trainer runs.",
                stacklevel=2,
            )
            return
        store.log(self._current_fx, name, value, prog_bar=prog_bar, logger=logger, on_step=on_step, on_epoch=on_epoch,
                  reduce_fx=reduce_fx, enable_graph=enable_graph, sync_dist=sync_dist,
                  add_dataloader_idx=add_dataloader_idx, batch_size=batch_size)

    def log_dict(self, dictionary: Mapping[str, Any], prog_bar: bool = False, logger: Optional[bool] = None,
                 on_step: Optional[bool] = None, on_epoch: Optional[bool] = None, reduce_fx: Any = "mean",
                 enable_graph: bool = False, sync_dist: bool = False, sync_dist_group: Any = None,
                 add_dataloader_idx: bool = True, batch_size: Optional[int] = None,
                 rank_zero_only: bool = False) -> None:
        """``self.log`` for every item of ``dictionary`` (a dict or a torchmetrics MetricCollection)."""
        if self._fabric is not None:
            self._log_through_fabric(dictionary, logger)
            return
        for name, value in dictionary.items():
            self.log(name, value, prog_bar=prog_bar, logger=logger, on_step=on_step, on_epoch=on_epoch,
                     reduce_fx=reduce_fx, enable_graph=enable_graph, sync_dist=sync_dist,
                     add_dataloader_idx=add_dataloader_idx, batch_size=batch_size)

    def _log_through_fabric(self, dictionary: Mapping[str, Any], logger: Optional[bool]) -> None:
        if logger is False:  # Fabric has no other place to send it (Lightning does the same)
            return
        nested = [name for name, value in dictionary.items() if isinstance(value, Mapping)]
        if nested:
            raise ValueError(f"self.log_dict(...) under Fabric got nested dictionaries under {nested}; loggers take "
                             "one number per name. Log each inner value under its own name.")
        self._fabric.log_dict(dict(dictionary))

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """Every rank's ``data`` (a tensor or a collection of tensors), each stacked on a new first dimension of
        size ``world_size``; on one process, ``data`` itself. ``sync_grads=True`` lets gradients flow back."""
        from ember._utils import apply_to_tensors

        if self._fabric is not None:
            return self._fabric.all_gather(data, group=group, sync_grads=sync_grads)
        strategy = self._trainer.strategy if self._trainer is not None else None
        if strategy is None or strategy.world_size == 1:
            return data
        return apply_to_tensors(data, lambda t: strategy.all_gather(t, group=group, sync_grads=sync_grads))

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on the process of global rank 0 only."""
        if (self._fabric.global_rank if self._fabric is not None else self.global_rank) == 0:
            print(*args, **kwargs)

    # --- the steps the user writes -----------------------------------------------------------------
    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} has no training_step: define `def training_step(self, batch, batch_idx)` "
            "returning the loss, to train it with Trainer.fit()."
        )

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        pass

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        pass

    def predict_step(self, batch: Any, batch_idx: int = 0, dataloader_idx: int = 0) -> Any:
        """By default, ``self(batch)``."""
        return self(batch)

    def configure_optimizers(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} has no configure_optimizers: define it and return an optimizer, e.g. "
            "`return torch.optim.Adam(self.parameters(), lr=1e-3)`."
        )

    def configure_callbacks(self) -> Any:
        """Callbacks this model always needs; they replace Trainer callbacks of the same type."""
        return []

    def configure_model(self) -> None:
        """Create layers here for sharded initialisation; called at the start of every stage."""

    # --- data hooks (a module may also serve its own data) --------------------------------------------
    def prepare_data(self) -> None:
        """Download or write data once per machine."""

    def setup(self, stage: str) -> None:
        """Called at the start of fit/validate/test/predict with that stage's name."""

    def teardown(self, stage: str) -> None:
        """Called at the end of fit/validate/test/predict."""

    def train_dataloader(self) -> Any:
        raise NotImplementedError

    def val_dataloader(self) -> Any:
        raise NotImplementedError

    def test_dataloader(self) -> Any:
        raise NotImplementedError

    def predict_dataloader(self) -> Any:
        raise NotImplementedError

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move a batch to the device; override for custom batch types."""
        return move_data_to_device(batch, device)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    # --- the model's mode around evaluation: called always, their defaults do the work ------------------------
    def on_validation_model_eval(self) -> None:
        """Called before ``on_validation_start`` (the sanity check's too). The default puts the model in eval mode;
        override it to keep some layers training, e.g. MC dropout: ``self.eval(); self.dropout.train()``."""
        self.eval()

    def on_validation_model_train(self) -> None:
        """Called after ``on_validation_end``. The default gives each submodule back the mode it had before
        ``on_validation_model_eval`` (a frozen backbone left in eval mode stays so)."""
        self._restore_modes_before_eval()

    def on_test_model_eval(self) -> None:
        """Called before ``on_test_start``. The default puts the model in eval mode."""
        self.eval()

    def on_test_model_train(self) -> None:
        """Called after ``on_test_end``. The default gives each submodule back the mode it had before the test."""
        self._restore_modes_before_eval()

    def on_predict_model_eval(self) -> None:
        """Called before ``on_predict_start``. The default puts the model in eval mode; each submodule gets its mode
        back after ``on_predict_end``."""
        self.eval()

    def _restore_modes_before_eval(self) -> None:
        """Each submodule's train/eval mode as the evaluation loop found it (it keeps them before on_*_model_eval)."""
        modes = self.__dict__.pop("_modes_before_eval", None)
        if modes is None:
            return
        for module, training in modes.items():
            module.training = training

    # --- lifecycle hooks: no-ops, called only when overridden ------------------------------------------
    def on_fit_start(self) -> None: ...
    def on_fit_end(self) -> None: ...
    def on_train_start(self) -> None: ...
    def on_train_end(self) -> None: ...
    def on_train_epoch_start(self) -> None: ...
    def on_train_epoch_end(self) -> None: ...
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Optional[int]: ...
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None: ...
    def on_validation_start(self) -> None: ...
    def on_validation_end(self) -> None: ...
    def on_validation_epoch_start(self) -> None: ...
    def on_validation_epoch_end(self) -> None: ...
    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_test_start(self) -> None: ...
    def on_test_end(self) -> None: ...
    def on_test_epoch_start(self) -> None: ...
    def on_test_epoch_end(self) -> None: ...
    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_predict_start(self) -> None: ...
    def on_predict_end(self) -> None: ...
    def on_predict_epoch_start(self) -> None: ...
    def on_predict_epoch_end(self) -> None: ...
    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_before_backward(self, loss: Tensor) -> None: ...
    def on_after_backward(self) -> None: ...
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None: ...
    def on_before_zero_grad(self, optimizer: torch.optim.Optimizer) -> None: ...
    def on_save_checkpoint(self, checkpoint: dict) -> None: ...
    def on_load_checkpoint(self, checkpoint: dict) -> None: ...

    # --- optimisation -------------------------------------------------------------------------------------
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer(s) from ``configure_optimizers``: one object, or a list when there are several. Under
        Fabric: the optimizers set up with this module (``fabric.setup(model, *optimizers)``)."""
        if self._fabric is not None:
            opts = self._fabric_optimizers
            return opts[0] if len(opts) == 1 else list(opts)
        from ember.trainer import step

        opts = self.trainer.optimizers if use_pl_optimizer is False else step.lightning_optimizers(self.trainer)
        return opts[0] if len(opts) == 1 else list(opts)

    def lr_schedulers(self) -> Any:
        """The scheduler(s) from ``configure_optimizers``: None, one, or a list."""
        scheds = [c.scheduler for c in self.trainer.lr_scheduler_configs]
        if not scheds:
            return None
        return scheds[0] if len(scheds) == 1 else scheds

    def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Call instead of ``loss.backward()`` with ``automatic_optimization = False`` (handles AMP scaling)."""
        if self._fabric is not None:
            self._fabric.backward(loss, *args, **kwargs)
            return
        from ember.trainer import step

        step.manual_backward(self.trainer, loss, *args, **kwargs)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """How the loss is backpropagated; override for custom behaviour."""
        if self._fabric is not None:
            self._fabric.backward(loss, *args, **kwargs)
            return
        loss.backward(*args, **kwargs)

    def clip_gradients(self, optimizer: Any, gradient_clip_val: Optional[float] = None,
                       gradient_clip_algorithm: Optional[str] = None) -> None:
        """Clip the gradients of ``optimizer``'s parameters by norm (default) or by value."""
        if self._fabric is not None:  # as Lightning: Fabric's clip_gradients, by value or by norm
            by_value = gradient_clip_algorithm == "value"
            self._fabric.clip_gradients(self, optimizer, clip_val=gradient_clip_val if by_value else None,
                                        max_norm=None if by_value else gradient_clip_val)
            return
        if gradient_clip_val is None or gradient_clip_val == 0:
            return
        from ember.trainer import step

        step.clip_gradients(self.trainer, optimizer, gradient_clip_val, gradient_clip_algorithm or "norm")

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: Optional[float] = None,
                                    gradient_clip_algorithm: Optional[str] = None) -> None:
        """Called before every optimizer step with the Trainer's clipping settings."""
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Step one scheduler; ``metric`` is the monitored value for ReduceLROnPlateau."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Step ``optimizer``; override for learning-rate warm-up and the like (call ``optimizer.step(closure=
        optimizer_closure)`` in your version). Under '16-mixed' an override bypasses the GradScaler."""
        optimizer.step(closure=optimizer_closure)

    def toggle_optimizer(self, optimizer: Any) -> None:
        """Let only ``optimizer``'s parameters require gradients (for several optimizers, e.g. a GAN)."""
        optimizer = getattr(optimizer, "optimizer", optimizer)
        own = {id(p) for group in optimizer.param_groups for p in group["params"]}
        saved = self.__dict__.setdefault("_toggled_requires_grad", {})
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                for p in group["params"]:
                    if id(p) not in own:
                        saved.setdefault(p, p.requires_grad)
                        p.requires_grad = False

    def untoggle_optimizer(self, optimizer: Any) -> None:
        """Undo ``toggle_optimizer``: restore every parameter's ``requires_grad``."""
        for p, requires_grad in self.__dict__.pop("_toggled_requires_grad", {}).items():
            p.requires_grad = requires_grad

    def freeze(self) -> None:
        """Stop gradients for every parameter and switch to eval mode."""
        for p in self.parameters():
            p.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        for p in self.parameters():
            p.requires_grad = True
        self.train()

    # --- export (ember/export.py) -----------------------------------------------------------------------
    def to_onnx(self, file_path: Any, input_sample: Any = None, **kwargs: Any) -> Any:
        """Write the model as ONNX (``torch.onnx.export``) run on ``input_sample`` or
        ``self.example_input_array``; ``kwargs`` go to ``torch.onnx.export``."""
        from ember.export import to_onnx

        return to_onnx(self, file_path, input_sample, **kwargs)

    def to_torchscript(self, file_path: Any = None, method: str = "script", example_inputs: Any = None,
                       **kwargs: Any) -> Any:
        """A ``ScriptModule`` from ``torch.jit.script`` (``method="script"``) or ``torch.jit.trace``
        (``"trace"``, on ``example_inputs`` or ``self.example_input_array``), saved when ``file_path`` is given."""
        from ember.export import to_torchscript

        return to_torchscript(self, file_path, method, example_inputs, **kwargs)

    def to_exported_program(self, input_sample: Any = None, file_path: Any = None, **kwargs: Any) -> Any:
        """A ``torch.export.ExportedProgram`` of ``forward`` on ``input_sample`` or ``self.example_input_array``,
        saved with ``torch.export.save`` when ``file_path`` is given. (Not in Lightning: ember's addition.)"""
        from ember.export import to_exported_program

        return to_exported_program(self, input_sample, file_path, **kwargs)

    # --- checkpoints ------------------------------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             strict: Optional[bool] = None, weights_only: Optional[bool] = None,
                             import_objects: Optional[bool] = None, **kwargs: Any) -> "LightningModule":
        """Build the model from the checkpoint's hyperparameters and load its weights.

        ``__init__`` gets, for each argument: the keyword given here, else the value stored in the checkpoint
        (or in ``hparams_file``, a ``hparams.yaml`` that replaces them), else its default; an argument with
        none of these raises an error naming it. An ``nn.Module`` argument is never stored: pass it,
        ``Model.load_from_checkpoint(path, net=MyNet())``.

        The file is read with ``torch.load(weights_only=True)`` (also for ``weights_only=None``): no code in it
        runs. Classes, functions and partials are stored as descriptions and are not imported unless you pass
        ``import_objects=True``, for a file you trust. ``weights_only=False`` unpickles the file fully, trusting
        it (as Lightning does), and then also rebuilds descriptions. An argument ``LightningCLI`` built from a
        ``class_path`` is stored as that config and built again (through jsonargparse) only with
        ``import_objects=True``.

        >>> model = MyModel.load_from_checkpoint("last.ckpt", lr=0.01)          # doctest: +SKIP
        """
        from ember.trainer.checkpoint import load_weights

        model, checkpoint = _load_from_checkpoint(cls, checkpoint_path, map_location, hparams_file, weights_only,
                                                  import_objects, kwargs, "hyper_parameters", "hparams_name")
        if is_overridden("configure_model", model, LightningModule):
            model.configure_model()  # as Lightning: layers made there must exist before the weights load
        # ``self.strict_loading = False`` in __init__ (or a class attribute), as in Lightning; None when not set
        overridden = type(model).strict_loading is not LightningModule.strict_loading
        own = model.strict_loading if overridden else model.__dict__.get("_strict_loading")
        if own is not None and strict is not None and bool(strict) != bool(own):
            raise ValueError(f"{cls.__name__}.load_from_checkpoint(strict={strict!r}) conflicts with "
                             f"{cls.__name__}.strict_loading={own!r}; pass the same value, or leave strict out.")
        strict = (True if own is None else bool(own)) if strict is None else strict
        load_weights(model, checkpoint, checkpoint_path, strict=strict)
        # As Lightning: the model goes where the loaded tensors are (a GPU checkpoint on a machine with a GPU stays
        # there; map_location decides otherwise).
        device = next((t.device for t in checkpoint["state_dict"].values() if isinstance(t, Tensor)), None)
        if device is not None:
            model.to(device)
        return model


class _FabricAsTrainer:
    """``self.trainer`` of a module set up by Fabric: attributes read from the Fabric (``self.trainer.world_size``,
    ``self.trainer.strategy``); a Trainer-only attribute raises an error that says so."""

    def __init__(self, fabric: Any) -> None:
        self._fabric = fabric

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(self._fabric, name)
        except AttributeError:
            raise AttributeError(
                f"self.trainer.{name}: this module was set up by Fabric, so `self.trainer` stands for the Fabric "
                f"object, which has no `{name}`. Pass the value to the module yourself, or train it with "
                "ember.Trainer.") from None
