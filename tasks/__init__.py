"""Downstream tasks: specs (data) registered by name, run by their family function.

Entries are lazy references to :class:`~g2d_bench.task.TaskSpec` objects in the family modules,
which import torch & co. only inside functions.
"""
from g2d_bench.registry import Registry

TASKS: Registry = Registry("task")
# linear classification (MGCA/G2D protocol)
TASKS.register("chexpert-cls", "g2d_bench.tasks.linear:CHEXPERT_CLS", "CheXpert 5 competition labels, frozen encoder + linear head, macro AUC")
TASKS.register("rsna-cls", "g2d_bench.tasks.linear:RSNA_CLS", "RSNA pneumonia, frozen encoder + linear head, AUC")
TASKS.register("covidx-cls", "g2d_bench.tasks.linear:COVIDX_CLS", "COVIDx 3 classes, frozen encoder + linear head, accuracy")
# segmentation (smp U-Net, frozen encoder)
TASKS.register("siim-seg", "g2d_bench.tasks.segmentation:SIIM_SEG", "SIIM pneumothorax, U-Net on the frozen encoder, Dice")
TASKS.register("rsna-seg", "g2d_bench.tasks.segmentation:RSNA_SEG", "RSNA pneumonia boxes as masks, U-Net on the frozen encoder, Dice")
# detection
TASKS.register("rsna-det", "g2d_bench.tasks.detection:RSNA_DET", "RSNA pneumonia, YOLOv3 head on frozen stages 2-4 (mgca-yolov3), mAP@.40:.75")
TASKS.register("objcxr-det", "g2d_bench.tasks.detection:OBJCXR_DET", "Object-CXR foreign objects, YOLOv3 head (mgca-yolov3), mAP@.40:.75")
TASKS.register("rsna-det-ultralytics", "g2d_bench.tasks.detection_ultralytics:RSNA_DET_ULTRALYTICS", "RSNA pneumonia, ultralytics YOLO head on the frozen backbone")
TASKS.register("objcxr-det-ultralytics", "g2d_bench.tasks.detection_ultralytics:OBJCXR_DET_ULTRALYTICS", "Object-CXR, ultralytics YOLO head on the frozen backbone")
# zero-shot classification (prompt pairs / ensembles from tasks/prompts.yaml; no training data)
TASKS.register("rsna-zs", "g2d_bench.tasks.zeroshot:RSNA_ZS", "RSNA pneumonia zero-shot (pneumonia vs no pneumonia), AUC / F1 / ACC")
TASKS.register("siim-zs", "g2d_bench.tasks.zeroshot:SIIM_ZS", "SIIM pneumothorax zero-shot, AUC / F1 / ACC")
TASKS.register("cxr14-zs", "g2d_bench.tasks.zeroshot:CXR14_ZS", "NIH ChestX-ray14 zero-shot, 14 labels, official test list, macro AUC / F1 / ACC")
TASKS.register("chexpert-zs", "g2d_bench.tasks.zeroshot:CHEXPERT_ZS", "CheXpert zero-shot, 5 competition labels on valid.csv, macro AUC / F1 / ACC")
TASKS.register("chexpert5x200-zs", "g2d_bench.tasks.zeroshot:CHEXPERT5X200_ZS", "CheXpert 5x200 zero-shot multi-class accuracy / macro F1")
# zero-shot grounding (BioViL pipeline, positive test images only)
TASKS.register("rsna-ground", "g2d_bench.tasks.grounding:RSNA_GROUND", "RSNA pneumonia grounding: pointing game, IoU / Dice, pixel AUROC")
TASKS.register("siim-ground", "g2d_bench.tasks.grounding:SIIM_GROUND", "SIIM pneumothorax grounding: pointing game, IoU / Dice, pixel AUROC")
# fine-tuned classification (whole encoder trained, KAD protocol)
TASKS.register("cxr14-ft", "g2d_bench.tasks.finetune:CXR14_FT", "NIH ChestX-ray14, encoder fine-tuned + linear head, macro AUC")
