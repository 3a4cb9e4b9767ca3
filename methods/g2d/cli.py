"""``g2d-bench g2d masks|figure``: G2D's own subcommands, contributed through its registry entry
(``MethodEntry.commands``): pseudo-mask IoU against SynthCXR's true lesions and a Fig.-4-like PNG.
Imports stay inside :meth:`G2DCommands.run` so building the CLI parser stays light."""
from __future__ import annotations

import argparse
from pathlib import Path


class G2DCommands:
    """``masks``: mean IoU of pseudo masks vs true lesions, with random / shifted / shuffled controls;
    ``figure``: a figure like G2D Fig. 4."""

    help = "inspect G2D's pseudo masks on SynthCXR (true lesions known)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="g2d_command", required=True, parser_class=type(parser))
        for name, text in (("masks", "mean IoU of pseudo masks vs true lesions, and of random / shifted / shuffled controls"),
                           ("figure", "a figure like G2D Fig. 4: attention map, pseudo mask, report")):
            p = sub.add_parser(name, help=text)
            p.add_argument("--checkpoint", help="G2D checkpoint folder (default: the quick CPU G2D, pretrained once)")
            p.add_argument("--n", type=int, default=200 if name == "masks" else 4, help="held-out images to use")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--data-root", type=Path,
                           help="a SynthCXR MIMIC-format copy with its _truth/ sidecar, e.g. one written by "
                                "'g2d-bench data synth --datasets mimic-cxr' (default: the embedded one)")
            if name == "figure":
                p.add_argument("--out", type=Path, default=Path("g2d_pseudo_masks.png"))
            else:
                p.add_argument("--per-head", action="store_true", help="also score each attention head's own pseudo mask")
            p.add_argument("--no-progress", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        import torch

        from g2d_bench.data import ensure_synthcxr
        from g2d_bench.quick import quick_checkpoint
        from g2d_bench.methods.g2d.figure import (compute_pseudo_masks, coverage_by_finding, per_head_overlap, placement, plot_pseudo_masks,
                                                  pseudo_mask_overlap)
        from g2d_bench.methods.g2d.inspect_masks import finding_masks, load_model, truth_pairs
        from g2d_bench.pretrain import contrastive_summary

        checkpoint = args.checkpoint or quick_checkpoint("g2d", progress=not args.no_progress)
        model = load_model(checkpoint)
        root = args.data_root or ensure_synthcxr("mimic-cxr", progress=not args.no_progress)
        images, truth, reports, keys = truth_pairs(root, model.cfg.image_size, args.n, args.seed)
        if args.g2d_command == "figure":
            path = plot_pseudo_masks(model, images, reports, args.out, true_masks=truth)
            print(f"wrote {path} ({len(reports)} held-out SynthCXR images, checkpoint {checkpoint})")
            return 0
        with torch.no_grad():
            masks = compute_pseudo_masks(model, images)
            result = pseudo_mask_overlap(model, images, truth, seed=args.seed, masks=masks)
            coverage = coverage_by_finding(model, images, finding_masks(root, keys, model.cfg.image_size), seed=args.seed, masks=masks)
            where = placement(model, images, truth, masks=masks)
        print(f"checkpoint {checkpoint}: {result['n']} held-out SynthCXR images with lesions")
        print(f"  mean IoU, pseudo mask vs true lesions:            {result['pseudo_iou']:.4f}")
        print(f"  mean IoU, random mask of the same area (in body):  {result['random_iou']:.4f}")
        print(f"  pseudo − random, per-image mean ± standard error:  {result['pseudo_iou'] - result['random_iou']:+.4f} ± {result['iou_gain_se']:.4f}")
        print(f"  mean IoU, the pseudo mask moved by a random shift: {result['shifted_iou']:.4f}")
        print(f"  mean IoU, another image's pseudo mask (shuffled):  {result['shuffled_iou']:.4f}")
        print(f"  pseudo − shuffled, per-image mean ± standard error: {result['pseudo_iou'] - result['shuffled_iou']:+.4f} ± {result['iou_gain_shuffled_se']:.4f}")
        print(f"  attention lift (lesion / body mean attention):     {result['attention_lift']:.4f}  (1 = no preference)")
        print(f"  attention lift, another image's attention:         {result['shuffled_lift']:.4f}")
        print("  share of each finding's mask inside: its image's pseudo mask / another image's / chance (mask share of body);"
              " own − another ± standard error")
        for name, row in coverage.items():
            print(f"    {name:28s} n={row['n']:<4d} {row['covered']:.3f} / {row['shuffled']:.3f} / {row['chance']:.3f}"
                  f"   {row['covered'] - row['shuffled']:+.3f} ± {row['shuffled_se']:.3f}")
        print("  share of each region inside the pseudo mask | inside the true lesion mask (4×4 regions, image top first)")
        for pseudo_row, lesion_row in zip(where["pseudo"], where["lesion"]):
            print("    " + " ".join(f"{v:.2f}" for v in pseudo_row) + "  |  " + " ".join(f"{v:.2f}" for v in lesion_row))
        if args.per_head:
            print("  per attention head (its own map through the same mask construction; training aggregates them):")
            for h, row in enumerate(per_head_overlap(model, images, truth, seed=args.seed)):
                print(f"    head {h}: pseudo IoU {row['pseudo_iou']:.4f}, − random {row['pseudo_iou'] - row['random_iou']:+.4f} ± {row['iou_gain_se']:.4f},"
                      f" − shuffled {row['pseudo_iou'] - row['shuffled_iou']:+.4f} ± {row['iou_gain_shuffled_se']:.4f}")
        summary = contrastive_summary(Path(checkpoint))
        if summary:
            print(f"  {summary}")
        return 0


COMMANDS = G2DCommands()
