"""Detection with an ultralytics YOLO head and trainer on the frozen pretrained backbone (protocol ``ultralytics``).

A g2d-bench protocol, not one of the paper's: it asks whether a method's ranking survives a modern
detector. The model YAML (:func:`model_yaml`) wraps the method's torchvision ResNet in ultralytics'
``TorchVision`` module (``weights: null``; the method's weights are copied in by renaming keys,
:func:`backbone_state_dict`), picks layer2/3/4 with ``Index`` layers, and adds a YOLOv8 neck and
``Detect`` head. A ``DetectionTrainer`` subclass builds that model in ``get_model`` (ultralytics
rebuilds the model inside ``train()``; weights set before would be lost), ``freeze`` keeps the
backbone frozen with BatchNorm in eval mode, and the best-fitness EMA weights are kept in memory.
Test images are scored with the same pycocotools mAP as ``mgca-yolov3`` (conf 0.5, NMS 0.5,
IoU 0.40:0.05:0.75), so the numbers are comparable in spirit only; the leaderboard keeps separate
columns.

Offline: ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=False`` and ``YOLO_CONFIG_DIR`` (holding an
``Arial.ttf``, here matplotlib's DejaVuSans) are set before ultralytics is imported (ENVIRONMENT.md).
"""
from __future__ import annotations

import copy
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from g2d_bench.errors import G2DBenchError
from g2d_bench.task import Hyper, SplitArrays, TaskContext, TaskResult, TaskSpec
from g2d_bench.tasks.dense_metrics import MAP_MODES, detection_map

log = logging.getLogger(__name__)

_MGCA_DET = "same as mgca-yolov3 (MGCA code, mgca/models/ssl_detector.py)"
_UL = "ultralytics 8.4 default.yaml"
#: YOLOv8 compound-scaling constants [depth, width] (ultralytics cfg/models/v8/yolov8.yaml)
YOLOV8_SCALES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75)}
#: torchvision ResNet children → ultralytics ``TorchVision`` split outputs: [input, conv1, bn1, relu,
#: maxpool, layer1, layer2, layer3, layer4]; Index 6/7/8 = layer2/3/4 (ENVIRONMENT.md)
STAGE_INDEX = {"layer2": 6, "layer3": 7, "layer4": 8}
#: torchvision key prefix → index in the unwrapped ``nn.Sequential`` (conv1, bn1, relu, maxpool, layer1..4)
_CHILD = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}

COMMON = {
    "image_size": Hyper(224, "REFERENCE.md: det 224 (as mgca-yolov3)"),
    "max_epochs": Hyper(50, "as mgca-yolov3 (MGCA mgca_detector.py max_epochs 50)"),
    "patience": Hyper(10, "as mgca-yolov3 (MGCA EarlyStopping patience 10; ultralytics default 100)"),
    "batch_size": Hyper(16, "as mgca-yolov3 (MGCA mgca_detector.py batch 16)"),
    "head_scale": Hyper("s", "g2d-bench choice: YOLOv8s neck/head widths (ultralytics yolov8.yaml scale s)"),
    "optimizer": Hyper("auto", f"{_UL}: optimizer auto (ultralytics chooses by iteration count), lr/augmentation defaults"),
    "conf_thres": Hyper(0.5, f"our mAP uses the mgca-yolov3 settings: {_MGCA_DET} conf_thres 0.5"),
    "nms_thres": Hyper(0.5, f"{_MGCA_DET}: nms_thres 0.5"),
    "map_mode": Hyper("all", "REFERENCE.md: count every test image; 'mgca-skip' = MGCA's skipping"),
}


def _spec(name: str, dataset: str, description: str) -> TaskSpec:
    from g2d_bench.tasks.detection import detection_spec

    return detection_spec(name, dataset, description, family="detection-ultralytics", protocol="ultralytics",
                          run="g2d_bench.tasks.detection_ultralytics:run", hparams=COMMON)


RSNA_DET_ULTRALYTICS = _spec("rsna-det-ultralytics", "rsna", "RSNA pneumonia, ultralytics YOLOv8 head on the frozen backbone, mAP@.40:.75")
OBJCXR_DET_ULTRALYTICS = _spec("objcxr-det-ultralytics", "object-cxr", "Object-CXR, ultralytics YOLOv8 head on the frozen backbone, mAP@.40:.75")


# -- model ----------------------------------------------------------------------------------------
def model_yaml(arch: str, stage_channels: tuple[int, int, int], scale: str = "s", nc: int = 1) -> dict:
    """Ultralytics model config: ``TorchVision`` ResNet (``weights: null``, unwrapped, last 2
    children dropped, split outputs) → ``Index`` layer2/3/4 → YOLOv8 neck (upsample-concat C2f
    top-down, strided-conv C2f bottom-up; yolov8.yaml) → ``Detect`` at strides 8/16/32."""
    if scale not in YOLOV8_SCALES:
        raise G2DBenchError(f"head_scale must be one of {', '.join(YOLOV8_SCALES)}, got {scale!r}")
    depth, width = YOLOV8_SCALES[scale]
    c3, c4, c5 = (int(c) for c in stage_channels)
    return {
        "nc": nc,
        "depth_multiple": depth,
        "width_multiple": width,
        "backbone": [
            [-1, 1, "TorchVision", [c5, arch, None, True, 2, True]],  # 0: [x, conv1, …, layer4]
            [0, 1, "Index", [c3, STAGE_INDEX["layer2"]]],  # 1: stride 8
            [0, 1, "Index", [c4, STAGE_INDEX["layer3"]]],  # 2: stride 16
            [0, 1, "Index", [c5, STAGE_INDEX["layer4"]]],  # 3: stride 32
        ],
        "head": [
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],  # 4
            [[-1, 2], 1, "Concat", [1]],  # 5
            [-1, 3, "C2f", [512]],  # 6
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],  # 7
            [[-1, 1], 1, "Concat", [1]],  # 8
            [-1, 3, "C2f", [256]],  # 9: P3/8
            [-1, 1, "Conv", [256, 3, 2]],  # 10
            [[-1, 6], 1, "Concat", [1]],  # 11
            [-1, 3, "C2f", [512]],  # 12: P4/16
            [-1, 1, "Conv", [512, 3, 2]],  # 13
            [[-1, 3], 1, "Concat", [1]],  # 14
            [-1, 3, "C2f", [1024]],  # 15: P5/32
            [[9, 12, 15], 1, "Detect", ["nc"]],  # 16
        ],
    }


def _child_name(key: str) -> str | None:
    """``layer3.1.conv2.weight`` → ``6.1.conv2.weight`` (index in the unwrapped Sequential); ``fc`` → None."""
    head, _, rest = key.partition(".")
    if head == "fc":
        return None
    if head not in _CHILD:
        raise G2DBenchError(f"backbone key {key!r} is not a torchvision ResNet key")
    return f"{_CHILD[head]}.{rest}" if rest else str(_CHILD[head])


def backbone_state_dict(state: dict) -> dict:
    """torchvision ResNet keys → keys of layer 0 of the ultralytics model
    (``conv1.weight`` → ``model.0.m.0.weight``, ``layer3.1.conv2.weight`` → ``model.0.m.6.1.conv2.weight``);
    ``fc.*`` dropped."""
    return {f"model.0.m.{name}": value for key, value in state.items() if (name := _child_name(key)) is not None}


def _restore_batchnorm(model, backbone) -> None:
    """Ultralytics re-initialises every BatchNorm to eps 1e-3 / momentum 0.03; give the backbone's
    back their torchvision values, so the frozen encoder computes exactly the method's features."""
    from torch import nn

    layers = dict(model.model[0].m.named_modules())
    for name, module in backbone.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (target := _child_name(name)) is not None:
            layers[target].eps, layers[target].momentum = module.eps, module.momentum


class InputNormalize:
    """Forward pre-hook for the ``TorchVision`` layer: ultralytics feeds RGB in [0, 1]; the method's
    weights expect its own mean/std (``Preprocess``). A module-level class, so checkpoints pickle."""

    def __init__(self, mean, std):
        self.mean, self.std = (None, None) if mean is None else (tuple(mean), tuple(std))

    def __call__(self, module, args):
        if self.mean is None:
            return None
        import torch

        x = args[0]
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((x - mean) / std,)


def build_model(cfg: dict | str, adapter, nc: int = 1, verbose: bool = False):
    """An ultralytics ``DetectionModel`` from ``cfg`` with the adapter's backbone weights and input
    normalisation. Raises if a backbone weight is not covered."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(cfg, nc=nc, ch=3, verbose=verbose)
    arch, backbone = adapter.torchvision_backbone()
    weights = backbone_state_dict(backbone.state_dict())
    result = model.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if k.startswith("model.0.")]
    if missing or result.unexpected_keys:
        raise G2DBenchError(f"method {adapter.name!r}: backbone weights do not fit the ultralytics TorchVision({arch}) "
                            f"layer (missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})")
    _restore_batchnorm(model, backbone)
    model.model[0].register_forward_pre_hook(InputNormalize(adapter.preprocess.mean, adapter.preprocess.std))
    return model


# -- offline set-up, data -------------------------------------------------------------------------
def _font() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def offline_ultralytics(config_dir: Path):
    """Import ultralytics with offline settings (ENVIRONMENT.md) and a local ``Arial.ttf`` in its
    config folder (else every dataset check tries to download the font). Returns the module."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))  # read once, when ultralytics is first imported
    os.environ.setdefault("YOLO_VERBOSE", "False")  # library code does not print (DESIGN.md)
    import ultralytics
    from ultralytics.utils import USER_CONFIG_DIR

    font = Path(USER_CONFIG_DIR) / "Arial.ttf"
    if not font.exists():
        font.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_font(), font)
        log.info("ultralytics: using %s as %s", _font(), font)
    return ultralytics


def _yolo_label(boxes: np.ndarray, size: int) -> str:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])].clip(0, size)
    rows = [f"0 {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} {(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}" for x1, y1, x2, y2 in b]
    return "\n".join(rows) + ("\n" if rows else "")


def write_yolo_dataset(root: Path, splits: dict[str, SplitArrays]) -> Path:
    """``root/images/{split}/*.png`` + ``root/labels/{split}/*.txt`` (class cx cy w h, normalised;
    empty file = no object) for ``{"train": …, "val": …}``, and ``root/data.yaml``. Returns the yaml."""
    import cv2
    import yaml

    for split, arrays in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        size = int(arrays.images.shape[-1])
        for i in range(len(arrays)):
            stem = f"{i:06d}"  # sample ids may hold path separators
            cv2.imwrite(str(root / "images" / split / f"{stem}.png"), np.asarray(arrays.images[i]))
            (root / "labels" / split / f"{stem}.txt").write_text(_yolo_label(arrays.boxes[i], size))
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "object"}}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# -- training -------------------------------------------------------------------------------------
def make_trainer(adapter, overrides: dict):
    """A ``DetectionTrainer`` whose ``get_model`` builds :func:`build_model` (weights survive
    ``train()``) and which keeps the best-fitness EMA state in memory (``trainer.best_state``)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class FrozenBackboneTrainer(DetectionTrainer):
        best_state: dict | None = None
        best_epoch: int = -1

        def get_model(self, cfg=None, weights=None, verbose=True):
            return build_model(cfg, adapter, nc=self.data["nc"], verbose=False)

    trainer = FrozenBackboneTrainer(overrides=overrides)

    def remember_best(tr) -> None:
        # validate() has just updated best_fitness; equal means this epoch is the best so far
        if tr.fitness is not None and tr.best_fitness is not None and tr.fitness >= tr.best_fitness and tr.epoch < tr.epochs:
            tr.best_state, tr.best_epoch = copy.deepcopy(tr.ema.ema.state_dict()), int(tr.epoch)

    trainer.add_callback("on_fit_epoch_end", remember_best)
    return trainer


def _device(device: str) -> str:
    return "cpu" if device == "cpu" else (device.split(":", 1)[1] if ":" in device else "0")


def train_overrides(ctx: TaskContext, model_cfg: Path, data_yaml: Path, size: int) -> dict:
    """Trainer arguments: our hparams, offline-safe and quiet; everything else ultralytics' defaults."""
    return {
        "model": str(model_cfg), "data": str(data_yaml), "epochs": int(ctx.hp("max_epochs")),
        "patience": int(ctx.hp("patience")), "batch": int(ctx.hp("batch_size")), "imgsz": size,
        "optimizer": ctx.hp("optimizer"), "device": _device(ctx.device), "seed": int(ctx.seed), "deterministic": True,
        "freeze": 1,  # layer 0 = TorchVision backbone (Index layers hold no weights); BN kept in eval mode
        "pretrained": False, "workers": 0, "amp": False,  # ENVIRONMENT.md: workers=0; amp=False (AMP check downloads)
        "plots": False, "verbose": False, "val": True, "cache": False, "save": False,
        "project": str(ctx.workdir), "name": "ultralytics", "exist_ok": True,
    }


def predict(model, arrays: SplitArrays, device: str, batch_size: int, conf: float, iou: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(boxes k×4 xyxy, scores k)]`` per image of ``arrays`` (ultralytics NMS, class-aware)."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(arrays), batch_size):
            x = torch.from_numpy(np.asarray(arrays.images[start : start + batch_size])).to(device).float().div_(255.0)
            preds = model(x[:, None].expand(-1, 3, -1, -1).contiguous())
            for det in non_max_suppression(preds, conf_thres=conf, iou_thres=iou, max_time_img=60.0):
                out.append((det[:, :4].cpu().numpy().astype(np.float32), det[:, 4].cpu().numpy().astype(np.float32)))
    return out


def run(ctx: TaskContext) -> TaskResult:
    """Family function of ``rsna-det-ultralytics`` / ``objcxr-det-ultralytics``."""
    import torch
    import yaml

    from g2d_bench.tasks.detection import check_data, per_image, _valid_boxes

    splits = {name: ctx.data(name) for name in ("train", "valid", "test")}
    size = {name: check_data(arrays, name) for name, arrays in splits.items()}
    if len(set(size.values())) != 1:
        raise G2DBenchError(f"detection: splits have different image sizes {size}; rebuild the cache")
    mode = ctx.hp("map_mode")
    if mode not in MAP_MODES:
        raise G2DBenchError(f"map_mode must be one of {', '.join(MAP_MODES)}, got {mode!r}")
    if ctx.adapter.preprocess.channels != 3:
        raise G2DBenchError(f"method {ctx.adapter.name!r} expects {ctx.adapter.preprocess.channels}-channel input; the ultralytics protocol needs 3")
    offline_ultralytics(Path(ctx.cache_dir or ctx.workdir) / "ultralytics-config")
    # the TorchVision layer rebuilds the backbone by name; its stride-8/16/32 widths from the adapter
    arch, _ = ctx.adapter.torchvision_backbone()
    channels = tuple(c for c, stride in ctx.adapter.feature_info() if stride in (8, 16, 32))
    cfg_path = ctx.workdir / "model.yaml"
    cfg_path.write_text(yaml.safe_dump(model_yaml(arch, channels, ctx.hp("head_scale"))))
    data_yaml = write_yolo_dataset(ctx.workdir / "yolo-data", {"train": splits["train"], "val": splits["valid"]})
    deterministic = torch.are_deterministic_algorithms_enabled()
    ul_logger = logging.getLogger("ultralytics")
    level = ul_logger.level
    ul_logger.setLevel(logging.WARNING)  # quiet even when ultralytics was imported verbose
    try:
        trainer = make_trainer(ctx.adapter, train_overrides(ctx, cfg_path, data_yaml, size["test"]))
        trainer.train()
    finally:
        torch.use_deterministic_algorithms(deterministic)  # ultralytics' init_seeds switches it on process-wide
        ul_logger.setLevel(level)
    model = build_model(str(cfg_path), ctx.adapter).to(ctx.device)
    if trainer.best_state is None:
        raise G2DBenchError("ultralytics training produced no validated epoch; check max_epochs and the validation split")
    model.load_state_dict({k: v.float() for k, v in trainer.best_state.items()})
    test = splits["test"]
    predictions = predict(model, test, ctx.device, int(ctx.hp("batch_size")), ctx.hp("conf_thres"), ctx.hp("nms_thres"))
    result = detection_map([p[0] for p in predictions], [p[1] for p in predictions], [_valid_boxes(b) for b in test.boxes], size["test"], mode)
    info = {"epochs_run": int(trainer.epoch) + 1, "best_epoch": trainer.best_epoch, "best_fitness": float(trainer.best_fitness or 0.0),
            "n_scored": result["n_scored"], "map_mode": mode, "image_size": size["test"], "model_yaml": cfg_path.read_text(),
            "n_train": len(splits["train"]), "n_valid": len(splits["valid"]), "n_test": len(test)}
    return TaskResult(metrics={"map": result["map"], "ap50": result["ap50"]}, per_sample=per_image(test.sample_ids, predictions, test), info=info)
