"""GLoRIA (Huang et al., ICCV 2021): global image–report alignment plus local word↔region alignment
through attention, as the paper and the official code (``marshuang80/gloria``) describe it.

Modules: :mod:`.config` (settings, profiles ``paper``/``official``, scales ``paper``/``cpu``),
:mod:`.captions` (sentence cleaning and sampling, word slots), :mod:`.model` (image and text towers),
:mod:`.losses` (attention, local and global scores and losses), :mod:`.recipe` (the pretraining
engine's recipe), :mod:`.adapter` (what tasks may ask), :mod:`.checkpoint` (our folders and the
published Lightning ``.ckpt``). docs/gloria.md describes the method and every setting.
"""
