"""ConVIRT (Zhang et al. 2020) as re-implemented in the MGCA repository (``HKU-MedAI/MGCA``,
``mgca/models/convirt/``): a ResNet image encoder and a BERT text encoder, each with a projection head
to a shared space, trained with a bidirectional InfoNCE over image–report pairs. See docs/convirt.md.

Modules: :mod:`.config` (profiles ``paper`` / ``official`` / ``original``), :mod:`.model`,
:mod:`.losses`, :mod:`.recipe` (the pretraining engine's recipe), :mod:`.adapter` (what tasks may ask),
:mod:`.checkpoint` (our folders, the MGCA repository's ConVIRT ``.ckpt``, bare torchvision ResNets).
"""
