"""YOLOv3 detection on frozen ResNet stages 2–4: protocol ``mgca-yolov3`` (MGCA code, followed by G2D A.4).

The method's encoder is frozen and runs under ``torch.no_grad()``; its layer2/3/4 maps (strides 8,
16, 32: 28², 14², 7² at 224 px) feed MGCA's YOLOv3 neck and head (:class:`YoloV3Head`: three
"embedding" stacks of conv-BN-LeakyReLU with upsample-and-concat between scales). Training uses
MGCA's YOLO loss (:func:`yolo_loss`), AdamW, early stopping on validation mAP; the best state is
tested. Predictions keep objectness ≥ 0.5, then NMS at IoU 0.5 (``torchvision.ops.batched_nms``),
and are scored with pycocotools mAP over IoU 0.40:0.05:0.75 on every test image
(:mod:`g2d_bench.tasks.dense_metrics`; ``map_mode="mgca-skip"`` reproduces MGCA's skipping).

No image is augmented (MGCA), so with the encoder's BatchNorm in eval mode (default) its outputs
on the training and validation images are computed once per run and reused every epoch
(:class:`~g2d_bench.tasks.segmentation.FeatureCache`, within ``feature_cache_mb``).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from g2d_bench.errors import G2DBenchError
from g2d_bench.task import Hyper, SplitArrays, TaskContext, TaskResult, TaskSpec
from g2d_bench.tasks.dense_metrics import MAP_MODES, best_ious, detection_map
from g2d_bench.tasks.heads import FEATURE_CACHE_SOURCE, MIN_STEPS_SOURCE, FeatureCache, batches, epoch_batches, fit_head

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

log = logging.getLogger(__name__)

_DET = "MGCA code, mgca/models/mgca/mgca_detector.py"
_SSL = "MGCA code, mgca/models/ssl_detector.py"
_LOSS = "MGCA code, mgca/utils/yolo_loss.py YOLOLoss"
#: COCO YOLOv3 anchors (w, h) at 416 px, largest first = stride 32, 16, 8 (MGCA ssl_detector.py
#: ModelMain.anchors; Redmon & Farhadi 2018); scaled by image_size / 416 (MGCA: × 224/416).
COCO_ANCHORS = ((116, 90), (156, 198), (373, 326)), ((30, 61), (62, 45), (59, 119)), ((10, 13), (16, 30), (33, 23))
ANCHOR_BASE = 416

COMMON = {
    "image_size": Hyper(224, "G2D A.4 / REFERENCE.md: det 224; MGCA detection_dataset imsize=224"),
    "lr": Hyper(5e-4, f"{_DET}: --learning_rate 5e-4 (run_det_finetune.sh: 5e-4 at 10/100 %; 2e-4 or 2.5e-4 with batch 8 at 1 %)"),
    "weight_decay": Hyper(1e-6, f"{_DET}: --weight_decay 1e-6"),
    "betas": Hyper((0.9, 0.999), f"{_SSL}: AdamW betas (0.9, 0.999)"),
    "batch_size": Hyper(16, f"{_DET}: --batch_size 16"),
    "max_epochs": Hyper(50, f"{_DET}: max_epochs 50"),
    "patience": Hyper(10, f"{_DET}: EarlyStopping(monitor='val_mAP', mode='max', patience=10); best val_mAP tested"),
    "conf_thres": Hyper(0.5, f"REFERENCE.md / {_SSL}: conf_thres 0.5 on objectness"),
    "nms_thres": Hyper(0.5, f"REFERENCE.md / {_SSL}: nms_thres 0.5"),
    "ignore_threshold": Hyper(0.5, f"{_LOSS}: ignore_threshold 0.5"),
    "lambda_xy": Hyper(2.5, f"{_LOSS}: lambda_xy 2.5"),
    "lambda_wh": Hyper(2.5, f"{_LOSS}: lambda_wh 2.5"),
    "lambda_conf": Hyper(1.0, f"{_LOSS}: lambda_conf 1.0"),
    "lambda_cls": Hyper(1.0, f"{_LOSS}: lambda_cls 1.0"),
    "noobj_weight": Hyper(0.5, f"{_LOSS}: conf loss = BCE(obj) + 0.5·BCE(noobj)"),
    "anchor_iou_plus_one": Hyper(True, f"{_LOSS}: bbox_iou adds +1 to widths/heights (in grid units) when matching anchors"),
    "head_width": Hyper(1.0, "MGCA code, ssl_detector.py ModelMain: neck widths 128-1024 (1.0); smaller = g2d-bench CPU-test knob"),
    "map_mode": Hyper("all", f"REFERENCE.md: count every test image; 'mgca-skip' = {_SSL} (drops images with no prediction or no GT)"),
    "encoder_bn": Hyper("eval", f"REFERENCE.md: frozen encoder, BN in eval mode; 'train' = {_DET} (requires_grad=False only)"),
    "drop_last": Hyper(True, "MGCA code, mgca/datasets/data_module.py train_dataloader(drop_last=True)"),
    "feature_cache_mb": Hyper(4096, FEATURE_CACHE_SOURCE),
    "min_steps_per_epoch": Hyper(0, MIN_STEPS_SOURCE),
}


def detection_spec(name: str, dataset: str, description: str, family: str = "detection", protocol: str = "mgca-yolov3",
                   run: str = "g2d_bench.tasks.detection:run", hparams: dict | None = None) -> TaskSpec:
    """A detection task: G2D's split, mAP@.40:.75 (primary) and AP50 on boxes; the protocol's family
    function and hyperparameters (default: this module's mgca-yolov3)."""
    return TaskSpec(
        name=name,
        version=1,
        family=family,
        dataset=dataset,
        split="g2d",
        protocol=protocol,
        metrics=("map", "ap50"),
        primary="map",
        run=run,
        hparams=COMMON if hparams is None else hparams,
        needs=frozenset({"boxes"}),
        description=description,
    )


_spec = detection_spec
RSNA_DET = _spec("rsna-det", "rsna", "RSNA pneumonia detection, YOLOv3 on frozen stages 2-4, mAP@.40:.75 (G2D Table 3)")
OBJCXR_DET = _spec("objcxr-det", "object-cxr", "Object-CXR foreign objects, YOLOv3 on frozen stages 2-4, mAP@.40:.75 (G2D Table 3)")


# -- model ----------------------------------------------------------------------------------------
def _cbl(c_in: int, c_out: int, k: int) -> "nn.Module":
    """conv (no bias) → BatchNorm → LeakyReLU(0.1), 'same' padding (MGCA ModelMain._make_cbl)."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=(k - 1) // 2, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1))


def _embedding(c_in: int, narrow: int, wide: int, c_out: int) -> "nn.ModuleList":
    """Five alternating 1×1/3×3 CBLs (the 5th output is the branch to the next scale), one more
    3×3 CBL and the 1×1 output conv with bias (MGCA ModelMain._make_embedding)."""
    from torch import nn

    layers = [_cbl(c_in, narrow, 1)]
    for i in range(5):
        layers.append(_cbl(narrow, wide, 3) if i % 2 == 0 else _cbl(wide, narrow, 1))
    layers.append(nn.Conv2d(wide, c_out, 1))
    return nn.ModuleList(layers)


def make_head(in_channels: Sequence[int], num_anchors: int = 3, num_classes: int = 1, width: float = 1.0) -> "nn.Module":
    """MGCA's YOLOv3 neck + head over ``(C3, C4, C5)`` stage channels (ResNet-50: 512, 1024, 2048).
    ``width`` scales the neck's channels (1.0 = MGCA: 128…1024).

    ``head([f3, f4, f5])`` with ``f_i``: ``B×C_i×S/2^i×S/2^i`` returns three raw maps
    ``B×A(5+K)×h×w`` at strides 32, 16, 8 (largest anchors first).
    """
    import torch
    from torch import nn

    c3, c4, c5 = in_channels
    out = num_anchors * (5 + num_classes)
    n128, n256, n512, n1024 = (max(8, int(round(c * width))) for c in (128, 256, 512, 1024))

    class YoloV3Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding0 = _embedding(c5, n512, n1024, out)
            self.embedding1_cbl = _cbl(n512, n256, 1)
            self.embedding1 = _embedding(c4 + n256, n256, n512, out)
            self.embedding2_cbl = _cbl(n256, n128, 1)
            self.embedding2 = _embedding(c3 + n128, n128, n256, out)
            self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

        @staticmethod
        def _branch(embedding, x):
            branch = None
            for i, layer in enumerate(embedding):
                x = layer(x)
                if i == 4:
                    branch = x
            return x, branch

        def forward(self, features):
            # NCHW: this head trains up to 25 % and predicts 20-50 % faster in NCHW than in channels_last
            # on CPU at ResNet-18 96-128 px (a tie at ResNet-50 224 px; docs/dense_tasks.md "Speed"),
            # while the encoder is faster in channels_last; a channels_last input would switch it back
            f3, f4, f5 = (f.contiguous() for f in features)
            out0, b0 = self._branch(self.embedding0, f5)
            out1, b1 = self._branch(self.embedding1, torch.cat([self.upsample(self.embedding1_cbl(b0)), f4], 1))
            out2, _ = self._branch(self.embedding2, torch.cat([self.upsample(self.embedding2_cbl(b1)), f3], 1))
            return [out0, out1, out2]

    return YoloV3Head()


def scaled_anchors(image_size: int) -> "torch.Tensor":
    """``3×3×2`` anchor (w, h) in pixels of ``image_size`` images, largest scale first."""
    import torch

    return torch.tensor(COCO_ANCHORS, dtype=torch.float32) * image_size / ANCHOR_BASE


#: the encoder outputs the YOLOv3 head reads: strides 8, 16, 32 (ResNet layer2/3/4; MGCA detector)
HEAD_STAGES = slice(3, 6)


def head_stages(encoder: "nn.Module", x: "torch.Tensor") -> list["torch.Tensor"]:
    """Normalised ``B×3×S×S`` → the encoder's stride-8, 16 and 32 maps (a ResNet's layer2/3/4) of a
    :meth:`~g2d_bench.adapter.MethodAdapter.trainable_encoder` (outputs at strides 1 … 32)."""
    return list(encoder(x)[HEAD_STAGES])


def build_detector(adapter, num_classes: int = 1, encoder_bn: str = "eval", width: float = 1.0) -> "nn.Module":
    """A private copy of the adapter's image encoder (frozen, channels_last) + :func:`make_head` (NCHW).
    ``model(x)`` takes normalised ``B×3×S×S`` (channels_last is fastest) and returns the three raw
    head maps; the encoder runs without a graph."""
    import torch
    from torch import nn

    if encoder_bn not in ("eval", "train"):
        raise G2DBenchError(f"encoder_bn must be 'eval' or 'train', got {encoder_bn!r}")
    # the encoder's weights are the adapter's: building it must not shift the head's initialisation draws
    with torch.random.fork_rng(devices=[]):
        encoder = adapter.trainable_encoder()
    encoder.requires_grad_(False).to(memory_format=torch.channels_last)  # ENVIRONMENT.md: 2.4x faster on CPU
    with torch.no_grad():
        channels = [f.shape[1] for f in head_stages(encoder.eval(), torch.zeros(1, 3, 64, 64))]

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.head, self.bn_mode = encoder, make_head(channels, 3, num_classes, width), encoder_bn

        def train(self, mode: bool = True):
            super().train(mode)
            self.encoder.train(mode and self.bn_mode == "train")
            return self

        def forward(self, x):
            with torch.no_grad():
                features = head_stages(self.encoder, x)
            return self.head(features)

    return Detector()


# -- loss -----------------------------------------------------------------------------------------
def _shape_iou(wh: "torch.Tensor", anchors: "torch.Tensor", plus_one: bool) -> "torch.Tensor":
    """IoU of boxes and anchors aligned at a corner: ``G×2`` vs ``A×2`` (w, h) → ``G×A``. MGCA's
    ``bbox_iou`` adds 1 to each side (a pixel convention, here in grid units): ``plus_one``."""
    import torch

    one = 1.0 if plus_one else 0.0
    inter = (torch.minimum(wh[:, None, 0], anchors[None, :, 0]) + one) * (torch.minimum(wh[:, None, 1], anchors[None, :, 1]) + one)
    area_gt = ((wh[:, 0] + one) * (wh[:, 1] + one))[:, None]
    area_anchor = ((anchors[:, 0] + one) * (anchors[:, 1] + one))[None, :]
    return inter / (area_gt + area_anchor - inter + 1e-16)


def build_targets(boxes: Sequence["torch.Tensor"], anchors: "torch.Tensor", grid: int, image_size: int,
                  ignore_threshold: float, plus_one: bool) -> dict:
    """MGCA ``YOLOLoss.get_target`` for one scale, vectorised.

    ``boxes[b]``: ``k×4`` xyxy pixels (class 0), ``anchors``: ``A×2`` pixels. Every box goes to the
    cell holding its centre and the best-matching of *this scale's* anchors; anchors of that cell
    whose shape IoU exceeds ``ignore_threshold`` leave the no-object set. Returns ``B×A×g×g``
    tensors ``mask``, ``noobj``, ``tx``, ``ty``, ``tw``, ``th``.
    """
    import torch

    n_anchors, stride = len(anchors), image_size / grid
    shape = (len(boxes), n_anchors, grid, grid)
    t = {name: torch.zeros(shape) for name in ("mask", "tx", "ty", "tw", "th")}
    t["noobj"] = torch.ones(shape)
    counts = [len(b) for b in boxes]
    if sum(counts) == 0:
        return t
    b_idx = torch.repeat_interleave(torch.arange(len(boxes)), torch.tensor(counts))
    xyxy = torch.cat([torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes]).cpu() / stride
    gx, gy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    gw, gh = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    gi, gj = gx.long().clamp(0, grid - 1), gy.long().clamp(0, grid - 1)
    grid_anchors = anchors.cpu() / stride
    ious = _shape_iou(torch.stack([gw, gh], 1), grid_anchors, plus_one)
    ignore_g, ignore_a = torch.nonzero(ious > ignore_threshold, as_tuple=True)
    t["noobj"][b_idx[ignore_g], ignore_a, gj[ignore_g], gi[ignore_g]] = 0.0
    best = ious.argmax(1)
    where = (b_idx, best, gj, gi)
    t["mask"][where] = 1.0
    t["tx"][where], t["ty"][where] = gx - gi, gy - gj
    t["tw"][where] = torch.log(gw / grid_anchors[best, 0] + 1e-16)
    t["th"][where] = torch.log(gh / grid_anchors[best, 1] + 1e-16)
    return t


def yolo_loss(output: "torch.Tensor", boxes: Sequence["torch.Tensor"], anchors: "torch.Tensor", image_size: int,
              hp: dict) -> "torch.Tensor":
    """MGCA's YOLOv3 loss for one scale (one class): ``λxy(BCE x + BCE y) + λwh(MSE w + MSE h) +
    λconf(BCE obj + 0.5·BCE noobj) + λcls·BCE cls``, each term summed over its cells and divided by
    **all** ``B·A·g·g`` cells (MGCA masks the tensors and takes ``nn.BCELoss``/``MSELoss`` means).

    ``output``: raw ``B×A(5+K)×g×g``; ``hp``: ``ignore_threshold``, ``anchor_iou_plus_one``,
    ``lambda_xy``, ``lambda_wh``, ``lambda_conf``, ``lambda_cls``, ``noobj_weight``.
    """
    import torch.nn.functional as F

    bsz, _, grid, _ = output.shape
    n_anchors = len(anchors)
    pred = output.view(bsz, n_anchors, -1, grid, grid).permute(0, 1, 3, 4, 2)
    t = {k: v.to(output.device) for k, v in build_targets(boxes, anchors, grid, image_size, hp["ignore_threshold"], hp["anchor_iou_plus_one"]).items()}
    mask, cells = t["mask"], float(t["mask"].numel())

    def bce(logits, target):
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")

    loss_xy = ((bce(pred[..., 0], t["tx"]) + bce(pred[..., 1], t["ty"])) * mask).sum() / cells
    loss_wh = (((pred[..., 2] - t["tw"]) ** 2 + (pred[..., 3] - t["th"]) ** 2) * mask).sum() / cells
    obj = pred[..., 4]
    loss_conf = ((F.softplus(-obj) * mask).sum() + hp["noobj_weight"] * (F.softplus(obj) * t["noobj"]).sum()) / cells
    cls = pred[..., 5:]  # every box is class 0: BCE against the one-hot target (1, 0, …)
    cls_bce = F.softplus(-cls[..., 0]) + F.softplus(cls[..., 1:]).sum(-1)
    loss_cls = (cls_bce * mask).sum() / (cells * cls.shape[-1])
    return hp["lambda_xy"] * loss_xy + hp["lambda_wh"] * loss_wh + hp["lambda_conf"] * loss_conf + hp["lambda_cls"] * loss_cls


# -- decoding -------------------------------------------------------------------------------------
def decode(output: "torch.Tensor", anchors: "torch.Tensor", image_size: int) -> "torch.Tensor":
    """Raw ``B×A(5+K)×g×g`` → ``B×(A·g·g)×(5+K)``: box centre/size in pixels
    (``(σ(t) + cell)·stride``, ``exp(t)·anchor``), objectness and class probabilities."""
    import torch

    bsz, _, grid, _ = output.shape
    n_anchors = len(anchors)
    stride = image_size / grid
    pred = output.view(bsz, n_anchors, -1, grid, grid).permute(0, 1, 3, 4, 2)
    ys, xs = torch.meshgrid(torch.arange(grid, device=output.device), torch.arange(grid, device=output.device), indexing="ij")
    wh = anchors.to(output.device).view(1, n_anchors, 1, 1, 2)
    cx = (torch.sigmoid(pred[..., 0]) + xs) * stride
    cy = (torch.sigmoid(pred[..., 1]) + ys) * stride
    size = torch.exp(pred[..., 2:4]) * wh
    out = torch.cat([cx[..., None], cy[..., None], size, torch.sigmoid(pred[..., 4:])], -1)
    return out.reshape(bsz, -1, out.shape[-1])


def postprocess(decoded: "torch.Tensor", conf_thres: float, nms_thres: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: keep objectness ≥ ``conf_thres`` (MGCA), class = argmax class probability, per-class
    NMS at ``nms_thres`` (torchvision ``batched_nms``), score = objectness (MGCA's mAP input).
    Returns ``[(boxes k×4 xyxy, scores k)]``."""
    from torchvision.ops import batched_nms, box_convert

    results = []
    for det in decoded:
        det = det[det[:, 4] >= conf_thres]
        boxes = box_convert(det[:, :4], "cxcywh", "xyxy")
        keep = batched_nms(boxes, det[:, 4], det[:, 5:].argmax(1), nms_thres)
        results.append((boxes[keep].cpu().numpy().astype(np.float32), det[keep, 4].cpu().numpy().astype(np.float32)))
    return results


# -- training and evaluation ----------------------------------------------------------------------
def check_data(arrays: SplitArrays, split: str) -> int:
    """The image side ``S`` of a split; boxes must be present and ``S`` a multiple of 32."""
    if arrays.boxes is None:
        raise G2DBenchError(f"detection needs boxes, but the cached {split} split has none; rebuild the cache")
    size = int(arrays.images.shape[-1])
    if size % 32:
        raise G2DBenchError(f"image_size {size} must be a multiple of 32 (YOLO strides 8/16/32); choose e.g. {max(32, size // 32 * 32)}")
    return size


def _valid_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]


def _images(ctx: TaskContext, arrays: SplitArrays, index: np.ndarray) -> "torch.Tensor":
    import torch

    x = torch.from_numpy(np.asarray(arrays.images[index])).to(ctx.device).unsqueeze(1).float().div_(255.0)
    return ctx.adapter.normalize(x).contiguous(memory_format=torch.channels_last)


def predict(ctx: TaskContext, model, arrays: SplitArrays, batch_size: int,
            features: Callable[[np.ndarray], list | None] = lambda index: None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(boxes k×4 xyxy, scores k)]`` for every image of ``arrays``, in order. ``features(index)``:
    the stored encoder stages of those rows (:meth:`FeatureCache.rows`), or ``None`` to run the encoder."""
    import torch

    size = int(arrays.images.shape[-1])
    anchors = scaled_anchors(size)
    model.eval()
    out = []
    with torch.no_grad():
        for index in batches(len(arrays), batch_size):
            stored = features(index)
            maps = model(_images(ctx, arrays, index)) if stored is None else model.head(stored)
            decoded = torch.cat([decode(m, anchors[i], size) for i, m in enumerate(maps)], 1)
            out.extend(postprocess(decoded, ctx.hp("conf_thres"), ctx.hp("nms_thres")))
    return out


def score(predictions, arrays: SplitArrays, mode: str) -> dict:
    gts = [_valid_boxes(b) for b in arrays.boxes]
    return detection_map([p[0] for p in predictions], [p[1] for p in predictions], gts, int(arrays.images.shape[-1]), mode)


def train_detector(ctx: TaskContext, model, train: SplitArrays, valid: SplitArrays) -> dict:
    """Train the head in place; the best-validation-mAP state is loaded back."""
    import torch

    size = int(train.images.shape[-1])
    anchors = scaled_anchors(size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=ctx.hp("lr"), betas=tuple(ctx.hp("betas")), weight_decay=ctx.hp("weight_decay"))
    generator = torch.Generator().manual_seed(ctx.seed)
    batch_size = int(ctx.hp("batch_size"))
    hp = {k: ctx.hp(k) for k in ("ignore_threshold", "anchor_iou_plus_one", "lambda_xy", "lambda_wh", "lambda_conf", "lambda_cls", "noobj_weight")}
    train_boxes = [torch.from_numpy(_valid_boxes(b)) for b in train.boxes]

    def train_epoch(epoch: int) -> float:
        model.train()
        total, seen = 0.0, 0
        for index in epoch_batches(len(train), batch_size, generator, bool(ctx.hp("drop_last")), int(ctx.hp("min_steps_per_epoch"))):
            index = np.sort(index)
            boxes = [train_boxes[i] for i in index]
            stored = cache.rows("train", index)
            maps = model(_images(ctx, train, index)) if stored is None else model.head(stored)
            loss = sum(yolo_loss(m, boxes, anchors[i], size, hp) for i, m in enumerate(maps))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + float(loss.detach()) * len(index), seen + len(index)
        return total / max(seen, 1)

    def validate() -> dict:
        predictions = predict(ctx, model, valid, batch_size, lambda index: cache.rows("valid", index))
        return {"val_map": score(predictions, valid, ctx.hp("map_mode"))["map"]}

    # no image is augmented: with the encoder frozen, its outputs are the same every epoch
    cache = FeatureCache(ctx, lambda x: head_stages(model.encoder.eval(), x), lambda arrays, index: _images(ctx, arrays, index))
    cache.add("valid", valid, batch_size)
    cache.add("train", train, batch_size, training_rows=True)
    info = fit_head(ctx, model, train_epoch, validate, "val_map", higher_is_better=True)
    cache.clear()
    return info | {"feature_cache": cache.notes}


def per_image(sample_ids: list[str], predictions, arrays: SplitArrays) -> "pd.DataFrame":
    """Per test image: predictions, ground-truth boxes, mean over GT of the best IoU (NaN without
    GT), highest score (NaN without predictions), and the predicted boxes, scores and counted GT
    boxes themselves (JSON), so mAP can be recomputed on bootstrap resamples (:mod:`.rescore`)."""
    import pandas as pd

    from g2d_bench.tasks.rescore import detection_box_columns

    rows = []
    for sample_id, (boxes, scores), gt in zip(sample_ids, predictions, arrays.boxes):
        gt = _valid_boxes(gt)
        ious = best_ious(boxes, gt)
        rows.append({"sample_id": sample_id, "n_pred": len(boxes), "n_gt": len(gt),
                     "best_iou": float(ious.mean()) if len(gt) else float("nan"),
                     "max_score": float(scores.max()) if len(scores) else float("nan")})
    table = pd.DataFrame(rows, columns=["sample_id", "n_pred", "n_gt", "best_iou", "max_score"])
    return table.assign(**detection_box_columns(predictions, [_valid_boxes(b) for b in arrays.boxes]))


def run(ctx: TaskContext) -> TaskResult:
    """Family function of ``rsna-det`` / ``objcxr-det`` (protocol ``mgca-yolov3``)."""
    import torch

    splits = {name: ctx.data(name) for name in ("train", "valid", "test")}
    size = {name: check_data(arrays, name) for name, arrays in splits.items()}
    if len(set(size.values())) != 1:
        raise G2DBenchError(f"detection: splits have different image sizes {size}; rebuild the cache")
    mode = ctx.hp("map_mode")
    if mode not in MAP_MODES:
        raise G2DBenchError(f"map_mode must be one of {', '.join(MAP_MODES)}, got {mode!r}")
    torch.manual_seed(ctx.seed)  # head init
    model = build_detector(ctx.adapter, 1, ctx.hp("encoder_bn"), float(ctx.hp("head_width"))).to(ctx.device)
    info = train_detector(ctx, model, splits["train"], splits["valid"])
    test = splits["test"]
    predictions = predict(ctx, model, test, int(ctx.hp("batch_size")))
    result = score(predictions, test, mode)
    metrics = {"map": result["map"], "ap50": result["ap50"]}
    info.update(n_scored=result["n_scored"], map_mode=mode, image_size=size["test"], encoder_bn=ctx.hp("encoder_bn"),
                n_train=len(splits["train"]), n_valid=len(splits["valid"]), n_test=len(test),
                n_test_with_boxes=int(sum(len(_valid_boxes(b)) > 0 for b in test.boxes)))
    return TaskResult(metrics=metrics, per_sample=per_image(test.sample_ids, predictions, test), info=info)
