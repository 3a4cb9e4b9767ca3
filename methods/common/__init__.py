"""Parts shared by every method (DESIGN.md "Method platform"): the DDP-exact InfoNCE with gathered
negatives (:mod:`.contrastive`), text towers — a Hugging Face model or a scratch BERT + MLM —
(:mod:`.text`), image-encoder helpers (:mod:`.resnet`), strict state-dict loading and the engine's
checkpoint folders (:mod:`.checkpoint`). No method imports from another method's package; what two
methods share lives here.
"""
